"""``labkit``: the lab's command line.

    labkit assets [--provision] [--fetch-originals] [--voices-tarball F]
    labkit say "TEXT" -o out.wav [--words out.json] [--voice af_heart] [--variant int8] [--server URL]
    labkit verify AUDIO.wav WORDS.json [--margin-db 15] [--no-recognizer]
    labkit compare REF.wav TEST.wav [--text "..."] [--json]
    labkit phonemize [TEXT | -]
    labkit journal -f experiments/default.yaml [--only STAGE] [--resume RUN_ID]
    labkit journal -f experiments/m1max.yaml --plan [--json] [--cores 8]
    labkit serve [--host ADDRESS] [--port N] [--as-login-agent]
    labkit bench [--texts phrase,sentence] [--soak N] [--plan]
    labkit doctor [--json]
    labkit service install|uninstall|status [--dry-run]

Every command takes ``-c CONFIG.yaml`` and ``-s key=value`` overrides of LabConfig.
"""
from __future__ import annotations

import argparse
import json
import shlex
import sys
from pathlib import Path

from labkit import procs
from labkit.config import ConfigError, LabConfig
from labkit.engine.registries import check_config


def _config(args) -> LabConfig:
    from labkit.engine.registries import check_config  # the registries load onnx: not at start-up

    cfg = LabConfig.load(args.config, args.set or None)
    check_config(cfg)
    return cfg


def cmd_assets(args) -> int:
    from labkit.engine import assets
    from labkit.optimize import recon

    cfg = _config(args)
    if args.provision or args.fetch_originals or args.voices_tarball:
        assets.provision(cfg, voices_tarball=Path(args.voices_tarball) if args.voices_tarball else None,
                         originals=args.fetch_originals, build_recon=recon.build_fp32_recon)
        marker = assets.assets_dir(cfg) / ".provisioned"
        marker.touch()
        if not args.no_word_timings:
            from labkit.lab.speak import timed_config

            print(f"word timings: {timed_config(cfg).model_path} (the durations output, checked)")
    print(f"assets dir: {assets.assets_dir(cfg)}")
    ref = assets.reference(cfg)
    for row in assets.describe(cfg):
        state = "ok     " if row["present"] else "missing"
        line = f"  {state} {row['what']:<16} {row['path']}"
        if row["present"]:
            line += f"\n          source: {row['source'] or 'unknown'}\n          sha256: {row['sha256'] or '(not recorded)'}"
            if row.get("npm_integrity"):
                line += f"\n          npm integrity: {row['npm_integrity']}"
        print(line)
    print(f"reference variant: {ref.variant} - {ref.note}")
    return 0


def cmd_say(args) -> int:
    text = sys.stdin.read() if args.text == "-" else args.text
    if args.server:
        from labkit.measure.client import Stopped, say_from_server

        try:
            cfg = _config(args)
            info = say_from_server(args.server, text, voice=args.voice, speed=args.speed,
                                   out_path=args.output, api_key=cfg.serve.api_key,
                                   words=bool(args.words),
                                   inline=True if cfg.text.inline_phonemes else None)
        except Stopped as exc:
            print(f"labkit say: {exc}", file=sys.stderr)
            return 128 + exc.signum
        if args.words:  # from the server's speech.word events (stream seconds)
            words = info.pop("words")
            Path(args.words).write_text(json.dumps(words, ensure_ascii=False, indent=1),
                                        encoding="utf-8")
            print(f"wrote {args.words}: {len(words)} words", file=sys.stderr)
        print(json.dumps(info, indent=2), file=sys.stderr)
        return 0
    import numpy as np
    import soundfile as sf

    from labkit.engine.pipeline import StreamingSynthesizer
    from labkit.kokoro import SAMPLE_RATE
    from labkit.optimize import split as splitting

    overrides = {}
    if args.variant:
        overrides["variant"] = args.variant
    if args.voice:
        overrides["voice"] = args.voice
    if args.speed is not None:
        overrides["speed"] = args.speed
    cfg = check_config(_config(args).with_overrides(overrides).validate())
    out = args.output or "out.wav"
    if args.words:
        from labkit.lab.speak import say

        audio, words = say(cfg, text)
        Path(args.words).write_text(json.dumps(words, ensure_ascii=False, indent=1), encoding="utf-8")
        print(f"wrote {args.words}: {len(words)} words", file=sys.stderr)
    else:
        from labkit.lab.speak import collect

        splitting.ensure_for(cfg)
        chunks = collect(StreamingSynthesizer.from_config(cfg).stream(text), text)
        audio = np.concatenate([c.audio for c in chunks]) if chunks else np.zeros(0, np.float32)
    sf.write(out, audio, SAMPLE_RATE, subtype="PCM_16")
    print(f"wrote {out}: {len(audio) / SAMPLE_RATE:.2f} s of audio "
          f"({cfg.variant}, voice {cfg.voice}, speed {cfg.speed})", file=sys.stderr)
    return 0


def cmd_verify(args) -> int:
    from labkit.measure.coverage import verify

    energy, listener = verify(args.audio, args.words, margin_db=args.margin_db,
                              listener=not args.no_recognizer)
    print("the model's spans:", energy.summary())
    if listener is not None:
        print("the recognizer's alignment:", listener.summary())
    return 0 if energy.ok and (listener is None or listener.ok) else 1


def cmd_compare(args) -> int:
    from labkit.quality import report

    try:
        rep = report.compare_files(args.reference, args.test, text=args.text)
    except report.CannotCompare as exc:
        print(f"labkit compare: cannot compare: {exc}", file=sys.stderr)
        return 2
    print(json.dumps(rep, indent=1, default=float) if args.json else report.text_report(rep))
    return 0 if rep["verdict"] == "pass" else 1


def cmd_phonemize(args) -> int:
    from labkit.engine.phonemize import phonemize_json

    text = sys.stdin.read() if args.text in (None, "-") else args.text
    print(json.dumps(phonemize_json(text, _config(args)), ensure_ascii=False, indent=2))
    return 0


def cmd_journal(args) -> int:
    from labkit.lab.batch import failed_stages, run_batch

    cfg = _config(args)
    if args.plan:
        return journal_plan(args, cfg)
    run_id = run_batch(args.file, only=args.only, resume=args.resume, cfg=cfg,
                       parameters=dict(kv.split("=", 1) for kv in (args.param or [])))
    failed = failed_stages(args.file, run_id, cfg, only=args.only)
    if failed:  # after the journal is written; a skipped stage is not a failure
        print(f"labkit journal: {len(failed)} stage(s) failed in {run_id}: {', '.join(failed)}",
              file=sys.stderr)
        return 1
    return 0


def journal_plan(args, cfg: LabConfig) -> int:
    import datetime

    from labkit import files
    from labkit.lab import costs, plan
    from labkit.lab.batch import Batch, _flatten, latest_run_of
    from labkit.optimize import coreml

    batch = Batch.load(args.file)
    bcfg = cfg.with_overrides(_flatten(batch.config)) if batch.config else cfg
    c, source = costs.current(bcfg)
    if args.cores:
        c = c.for_cores(args.cores)
        source += f"; scaled from {costs.machine.session_threads(bcfg.session)} to {args.cores} threads"
    previous = latest_run_of(bcfg, batch.name)
    kernel = plan.kernel_seconds(bcfg, bcfg.resolve(bcfg.artifacts_dir) / previous if previous else None)
    p = plan.plan_batch([(s.name, s.notebook, s.parameters) for s in batch.stages
                         if not args.only or s.name in args.only], c, bcfg, kernel,
                        accelerators=bool(args.cores) or coreml.coreml_available())
    p.update(batch=batch.name, batch_file=str(batch.path), batch_sha=plan.batch_sha(batch.path),
             created=datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
             cores=args.cores)
    if not args.only:  # this machine's plan: the run that follows keeps it beside its records
        # (labkit.lab.batch); another machine's under its own name, which no run here takes,
        # for docs/results.md's Plans (labkit.lab.journal.saved_plans)
        name = batch.name if not args.cores else f"{batch.name}@{args.cores}-cores"
        files.write_json(bcfg.resolve(bcfg.artifacts_dir) / plan.plan_name(name), p, indent=2)
    if args.json:
        print(json.dumps(p, indent=2))
    else:
        print(f"plan for {batch.path} ({batch.name}):")
        print("\n".join(plan.plan_lines(p, source)))
    return 0


def serve_config(args) -> LabConfig:
    """The config ``labkit serve`` runs: settings, then ``--host``/``--port`` (flags win)."""
    flags = {f"serve.{k}": v for k, v in (("host", args.host), ("port", args.port)) if v is not None}
    return _config(args).with_overrides(flags) if flags else _config(args)


def cmd_serve(args) -> int:
    from serve import serve

    from labkit.host import launchd, ports
    from labkit.optimize import split as splitting

    cfg = serve_config(args)
    if args.as_login_agent:
        for name in launchd.rotate_logs():
            print(f"labkit serve: {name} passed {launchd.LOG_CAP_BYTES >> 20} MB: "
                  f"the older lines are in {name}.1", file=sys.stderr)
    # before the model loads: a taken port is one sentence in a second, not a failed start
    taken = ports.holder(cfg.serve.host, cfg.serve.port)
    if taken:
        print(f"labkit serve: port {cfg.serve.port} on {cfg.serve.host} is held by "
              f"{taken.describe()}: stop it, or choose another port with --port N", file=sys.stderr)
        if args.as_login_agent:  # exit 0: launchd restarts the agent only after a failure
            print("labkit serve: the login agent stays stopped (launchd does not restart a "
                  "clean exit); run labkit service install once the port is free", file=sys.stderr)
            return 0
        return 2
    splitting.ensure_for(cfg)  # the parts best.json's choice runs on, built when missing
    serve(cfg)
    return 0


def cmd_doctor(args) -> int:
    from labkit.host import doctor

    return doctor.main(_config(args), as_json=args.json)


def cmd_service(args) -> int:
    from labkit.host import launchd

    cfg = _config(args)
    if args.dry_run:
        text, commands = launchd.dry_run(args.action, cfg, args.config, args.set)
        print(text, end="")
        for argv in commands:
            print(f"# would run: {shlex.join(argv)}", file=sys.stderr)
        if args.action == "install":
            print("# (bootout only when the agent is loaded, then launchctl print until launchd "
                  "has released it; bootstrap retried while launchd answers 5 or 37)", file=sys.stderr)
        return 0
    if args.action == "install":
        result = launchd.install(cfg, args.config, args.set)
    elif args.action == "uninstall":
        result = launchd.uninstall()
    else:
        result = launchd.status()
    print(json.dumps(result, indent=2))
    return 0


def cmd_bench(args) -> int:
    from labkit import progress
    from labkit.lab import costs
    from labkit.lab.batch import latest_run
    from labkit.lab.journal import write_journal
    from labkit.lab.s08_endpoint import TEXT_NAMES, bench, plan, plan_lines
    from labkit.optimize import split as splitting
    from labkit.best_config import resolve

    cfg = _config(args)
    texts = [t for group in (args.texts or [",".join(TEXT_NAMES)]) for t in group.split(",") if t]
    unknown = [t for t in texts if t not in TEXT_NAMES]
    if unknown:
        raise ConfigError(f"--texts {','.join(unknown)}: unknown; choose from {', '.join(TEXT_NAMES)}")
    if args.soak < 0:
        raise ConfigError(f"--soak {args.soak}: a number of requests >= 0")
    scfg = resolve(cfg).cfg  # what the endpoint serves: the costs are this configuration's
    splitting.ensure_for(scfg)
    c, source = costs.current(scfg)
    for line in plan_lines(plan(c, texts, args.soak, scfg.serve.max_input_chars), source):
        progress.say(line)
    if args.plan:
        return 0
    run_id = args.run_id or latest_run(cfg)  # into the latest journal run, when there is one
    path = bench(cfg, run_id=run_id, texts=texts, soak_requests=args.soak)
    print(f"bench record: {path}")
    for p in write_journal(cfg, path.parent.parent.name).values():
        print(f"wrote {p}")
    return 0


def _port(text: str) -> int:
    try:
        port = int(text)
    except ValueError:
        port = -1
    if not 1 <= port <= 65535:
        raise argparse.ArgumentTypeError(f"{text!r} is not a port number (1-65535)")
    return port


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="labkit", description="Kokoro Lab")
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument("-c", "--config", help="LabConfig YAML file")
    common.add_argument("-s", "--set", action="append", metavar="KEY=VALUE",
                        help="override a LabConfig setting (repeatable), e.g. -s session.intra_op_threads=1")
    sub = p.add_subparsers(dest="command", required=True)

    a = sub.add_parser("assets", parents=[common], help="show (and provision) the model and voices")
    a.add_argument("--provision", action="store_true", help="provision what is missing")
    a.add_argument("--fetch-originals", action="store_true",
                   help="also download the kokoro-onnx fp32/fp16 originals (needs internet)")
    a.add_argument("--voices-tarball", help="use this kokoro-js-1.2.1.tgz instead of `npm pack`")
    a.add_argument("--no-word-timings", action="store_true",
                   help="do not build the configured model's copy with the durations output "
                        "(labkit.optimize.durations; the engine uses it for word timings)")
    a.set_defaults(fn=cmd_assets)

    s = sub.add_parser("say", parents=[common], help="speak text to a wav file")
    s.add_argument("text", help="the text, or - for stdin")
    s.add_argument("-o", "--output", help="output file (default out.wav; with --server, none plays it)")
    s.add_argument("--voice")
    s.add_argument("--variant")
    s.add_argument("--speed", type=float)
    s.add_argument("--server", help="stream from a running endpoint, e.g. http://127.0.0.1:8880")
    s.add_argument("--words", metavar="WORDS.json",
                   help='also write [{"word", "start", "end", "input_start", "input_end"}] '
                        '(seconds from the model\'s durations; code-point offsets into TEXT) and '
                        '{"skipped", "text", "input_start", "input_end"} for what was left out '
                        '(with --server: from its speech.word / speech.skipped events)')
    s.set_defaults(fn=cmd_say)

    v = sub.add_parser("verify", parents=[common],
                       help="check that every word's span in AUDIO holds speech, and that an independent "
                            "recognizer places each word there (exit 1 names those that fail)")
    v.add_argument("audio", help="a wav file")
    v.add_argument("words", help='its words: [{"word", "start", "end"}] (labkit say --words)')
    v.add_argument("--margin-db", type=float, default=15.0,
                   help="how far above the file's silence floor a word must be (dB, default 15)")
    v.add_argument("--no-recognizer", action="store_true",
                   help="skip the independent check (pocketsphinx's forced alignment of the words)")
    v.set_defaults(fn=cmd_verify)

    c = sub.add_parser("compare", parents=[common],
                       help="the quality ruler on two files: every figure and the verdict "
                            "(exit 0 pass, 1 fail, 2 cannot compare)")
    c.add_argument("reference", help="the reference audio (a wav or any file soundfile reads)")
    c.add_argument("test", help="the audio to judge against it (other lengths are aligned)")
    c.add_argument("--text", help="what is said: adds each side's word error rate (pocketsphinx)")
    c.add_argument("--json", action="store_true", help='JSON with a top-level "verdict"')
    c.set_defaults(fn=cmd_compare)

    ph = sub.add_parser("phonemize", parents=[common], help="sanitize + G2P, printed as JSON")
    ph.add_argument("text", nargs="?", help="the text, or - (default) for stdin")
    ph.set_defaults(fn=cmd_phonemize)

    j = sub.add_parser("journal", parents=[common], help="run a papermill batch and write the journal")
    j.add_argument("-f", "--file", default="experiments/default.yaml")
    j.add_argument("--only", action="append", help="run only this stage (repeatable)")
    j.add_argument("--resume", metavar="RUN_ID", help="continue this run, skipping stages already ok")
    j.add_argument("-p", "--param", action="append", metavar="STAGE.NAME=VALUE",
                   help="override a notebook parameter, e.g. 03_quantization.fail=true")
    j.add_argument("--plan", action="store_true",
                   help="print what the batch will run and its estimated time and disk; run nothing")
    j.add_argument("--json", action="store_true", help="with --plan: the plan as JSON")
    j.add_argument("--cores", type=int, metavar="N",
                   help="with --plan: plan for a machine whose sessions use N threads")
    j.set_defaults(fn=cmd_journal)

    sv = sub.add_parser("serve", parents=[common], help="run the OpenAI-compatible endpoint")
    sv.add_argument("--host", help="listen on this address (default: serve.host, 127.0.0.1)")
    sv.add_argument("--port", type=_port, help="listen on this port (default: serve.port, 8880)")
    sv.add_argument("--as-login-agent", action="store_true",
                    help="started by the login agent (labkit service): rotate its logs past "
                         "5 MB, and exit 0 (launchd then does not restart it) when the port is taken")
    sv.set_defaults(fn=cmd_serve)

    d = sub.add_parser("doctor", parents=[common],
                       help="check this machine: OS, Python, compiler, ORT, threads, audio, assets, endpoint")
    d.add_argument("--json", action="store_true", help="print the report as JSON")
    d.set_defaults(fn=cmd_doctor)

    sc = sub.add_parser("service", parents=[common],
                        help="run the endpoint at login (macOS launchd LaunchAgent)")
    sc.add_argument("action", choices=("install", "uninstall", "status"))
    sc.add_argument("--dry-run", action="store_true",
                    help="print the plist and the launchctl commands; change nothing (any platform)")
    sc.set_defaults(fn=cmd_service)

    b = sub.add_parser("bench", parents=[common], help="endpoint vs in-process baselines "
                       "(says up front what it runs and about how long)")
    b.add_argument("--run-id")
    b.add_argument("--texts", action="append", metavar="NAME[,NAME]",
                   help="the texts to bench (default: phrase,sentence,paragraph,article); "
                        "--texts phrase is the short form")
    b.add_argument("--soak", type=int, default=200, help="sequential requests in the soak (default 200)")
    b.add_argument("--plan", action="store_true", help="print what it would run and the estimate, then stop")
    b.set_defaults(fn=cmd_bench)
    return p


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    # SIGTERM/SIGHUP unwind like Ctrl-C: every server, load process and kernel this
    # command started is stopped on the way out (labkit.procs)
    try:
        with procs.signals_raise():
            return args.fn(args)
    except (ConfigError, ValueError, RuntimeError, FileNotFoundError) as exc:
        print(f"labkit {args.command}: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print(f"labkit {args.command}: interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
