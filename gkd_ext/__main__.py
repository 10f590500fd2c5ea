"""Command line: `python -m gkd_ext {demo,train,info} ...`."""
import os
import sys


def _passive_openmp() -> None:
    """Restart this command once with ``OMP_WAIT_POLICY=PASSIVE`` unless the user set a wait
    policy. OpenMP threads that spin while they wait for each other turn a loaded machine into
    a crawl: a Cora GCN epoch at 2 threads took 379 ms with two other processes running, 19 ms
    at 1 thread and 22 ms at 2 passive threads. The policy is read when the OpenMP runtime
    starts (it already has: the package imported torch), hence the restart, which keeps the
    process id and arguments."""
    if "OMP_WAIT_POLICY" in os.environ:
        return
    env = dict(os.environ, OMP_WAIT_POLICY="PASSIVE")
    os.execve(sys.executable, [sys.executable, "-m", "gkd_ext", *sys.argv[1:]], env)


def main(argv=None) -> None:
    argv = sys.argv[1:] if argv is None else argv
    commands = {"demo": "the `make demo` job on the bundled Cora",
                "train": "train with a KD method over seeds (see `python -m gkd_ext train --help`)",
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
    elif argv[0] == "train":
        from .train.cli import main as train
        train(argv[1:])
    else:
        from .info import report
        print(report())


if __name__ == "__main__":
    _passive_openmp()
    main()
