"""Command line: `python -m gkd_ext {demo,info} ...`."""
import sys


def main(argv=None) -> None:
    argv = sys.argv[1:] if argv is None else argv
    commands = {"demo": "train a GCN on the bundled Cora and time SpMM (the `make demo` job)",
                "info": "versions, build flags and the registered ops"}
    if not argv or argv[0] in ("-h", "--help") or argv[0] not in commands:
        print("usage: python -m gkd_ext COMMAND [options]\n\ncommands:")
        for name, what in commands.items():
            print(f"  {name:<6} {what}")
        if argv and argv[0] not in ("-h", "--help"):
            print(f"\nerror: unknown command {argv[0]!r}", file=sys.stderr)
            sys.exit(2)
        return
    if argv[0] == "demo":
        from .demo import main as demo
        demo(argv[1:])
    else:
        from .info import report
        print(report())


if __name__ == "__main__":
    main()
