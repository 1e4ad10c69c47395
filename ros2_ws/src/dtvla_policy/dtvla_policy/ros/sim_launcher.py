"""`dtvla-sim`: the policy node and the LIBERO sim bridge as two processes, N episodes, a JSON summary.

For machines with the ROS 2 wheels but no `ros2 launch` (no launch/launch_ros wheels exist): it starts the same
executables with the same parameter file as launch/sim.launch.py, watches the bridge's episode status, shows a
progress bar, stops both nodes with SIGINT after the last episode and exits with their exit codes. The summary
reports the settings the nodes ran with: the parameter file's values and the overrides passed (`sim_params`).
With no --checkpoint it writes (once) and uses a tiny random-init checkpoint and says so loudly.
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import subprocess
import sys
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path

import rclpy
import yaml
from diagnostic_msgs.msg import DiagnosticArray
from rclpy.context import Context
from rclpy.executors import SingleThreadedExecutor
from rclpy.node import Node
from rclpy.qos import DurabilityPolicy, HistoryPolicy, QoSProfile, ReliabilityPolicy
from rclpy.signals import SignalHandlerOptions
from std_msgs.msg import String
from tqdm import tqdm
from trajectory_msgs.msg import JointTrajectory

from dtvla_policy.protocol import NODE_MODES
from dtvla_policy.ros import contract
from dtvla_policy.ros.sim_params import BRIDGE_NODE, POLICY_NODE, SimSettings, default_params_file

FINAL_STATES = ("success", "timeout", "failed", "aborted")
# Reliable, latched, and deep enough that an episode's end and the "finished" right after it both arrive.
STATUS_QOS = QoSProfile(history=HistoryPolicy.KEEP_LAST, depth=10, reliability=ReliabilityPolicy.RELIABLE,
                        durability=DurabilityPolicy.TRANSIENT_LOCAL)
UNTRAINED_BANNER = """
################################################################################
#  No --checkpoint given: using a tiny RANDOM-INIT checkpoint ({path}).
#  The policy is UNTRAINED: its actions and chain-of-thought are noise and the
#  robot will not solve the task. Pass --checkpoint DIR for a real model.
################################################################################
"""


def tiny_checkpoint_dir() -> Path:
    cache = Path(os.environ.get("XDG_CACHE_HOME", Path.home() / ".cache"))
    return cache / "dtvla" / "tiny-checkpoint"


def ensure_tiny_checkpoint() -> Path:
    path = tiny_checkpoint_dir()
    if not (path / "config.json").is_file():
        from dtvla_policy.model.tiny_checkpoint import write_tiny_checkpoint  # torch only when needed

        write_tiny_checkpoint(path)
    return path


@dataclass
class RunState:
    """What the watcher saw: final episode records, chunk count, per-chunk policy latency."""

    episodes: dict[int, dict] = field(default_factory=dict)
    current: dict = field(default_factory=dict)
    chunks: int = 0
    latencies_ms: list[float] = field(default_factory=list)
    published_seen: int = 0
    lock: threading.Lock = field(default_factory=threading.Lock)

    def on_status(self, msg: String) -> None:
        try:
            status = json.loads(msg.data)
        except json.JSONDecodeError:
            return
        with self.lock:
            self.current = status
            # "finished" follows the last episode's end and still carries its result in "outcome"
            outcome = status.get("outcome") if status.get("state") == "finished" else status.get("state")
            if outcome in FINAL_STATES and "episode" in status:
                self.episodes[int(status["episode"])] = {**status, "state": outcome}

    def on_chunk(self, _msg: JointTrajectory) -> None:
        with self.lock:
            self.chunks += 1

    def on_diagnostics(self, msg: DiagnosticArray) -> None:
        for status in msg.status:
            if not status.name.endswith(": inference"):
                continue
            values = {kv.key: kv.value for kv in status.values}
            published = int(values.get("inferences", 0))
            with self.lock:
                if published > self.published_seen and "total_ms" in values:
                    self.published_seen = published
                    self.latencies_ms.append(float(values["total_ms"]))


def node_command(module: str, params_file: Path, overrides: dict[str, object], node: str) -> list[str]:
    command = [sys.executable, "-m", module, "--ros-args", "--params-file", str(params_file)]
    for name, value in overrides.items():
        text = str(value).lower() if isinstance(value, bool) else value  # ROS reads `-p` values as YAML
        command += ["-p", f"{node}:{name}:={text}"]
    return command


def stop(process: subprocess.Popen, timeout: float = 30.0) -> int:
    if process.poll() is None:
        process.send_signal(signal.SIGINT)
    try:
        return process.wait(timeout=timeout)
    except subprocess.TimeoutExpired:
        process.kill()
        return process.wait()


def tail(path: Path, lines: int = 15) -> str:
    return "\n".join(path.read_text(errors="replace").splitlines()[-lines:]) if path.exists() else ""


def run(args: argparse.Namespace) -> int:
    untrained = args.checkpoint is None
    checkpoint = ensure_tiny_checkpoint() if untrained else Path(args.checkpoint).expanduser().resolve()
    if untrained:
        print(UNTRAINED_BANNER.format(path=checkpoint), file=sys.stderr)
    params_file = Path(args.params_file) if args.params_file else default_params_file()
    try:
        settings = SimSettings.resolve(
            params_file, checkpoint=checkpoint, mode=args.mode, max_cot_tokens=args.max_cot_tokens,
            suite=args.suite, task=args.task, init_state=args.init_state, episodes=args.episodes,
            max_steps=args.max_steps,
        )
    except (FileNotFoundError, ValueError, yaml.YAMLError) as exc:
        print(f"dtvla-sim: {exc}", file=sys.stderr)
        return 2
    log_dir = Path(args.log_dir or Path("runs") / time.strftime("sim-%Y%m%d-%H%M%S")).resolve()
    log_dir.mkdir(parents=True, exist_ok=True)

    commands = {
        "policy": node_command("dtvla_policy.ros.policy_node", params_file, settings.overrides[POLICY_NODE],
                               POLICY_NODE),
        "bridge": node_command("dtvla_sim_bridge.ros.sim_bridge_node", params_file, settings.overrides[BRIDGE_NODE],
                               BRIDGE_NODE),
    }
    state = RunState()
    context = Context()
    rclpy.init(context=context, signal_handler_options=SignalHandlerOptions.NO)
    watcher = Node("dtvla_sim_watcher", context=context)
    watcher.create_subscription(String, contract.EPISODE_STATUS_TOPIC, state.on_status, STATUS_QOS)
    watcher.create_subscription(JointTrajectory, contract.POLICY_ACTION_CHUNK, state.on_chunk, contract.COMMAND_QOS)
    watcher.create_subscription(DiagnosticArray, contract.DIAGNOSTICS_TOPIC, state.on_diagnostics, 10)
    executor = SingleThreadedExecutor(context=context)
    executor.add_node(watcher)
    spinner = threading.Thread(target=executor.spin, daemon=True)
    spinner.start()

    processes: dict[str, subprocess.Popen] = {}
    logs = {name: log_dir / f"{name}.log" for name in commands}
    error = ""
    interrupted = False
    start = time.monotonic()
    try:
        for name, command in commands.items():
            with logs[name].open("w") as log:
                processes[name] = subprocess.Popen(command, stdout=log, stderr=subprocess.STDOUT)
        shown: dict = {}
        with tqdm(total=args.episodes, unit="episode", desc=f"{args.suite}/{args.task}", file=sys.stderr,
                  mininterval=1.0) as bar:
            while True:
                with state.lock:
                    done, current, chunks = len(state.episodes), dict(state.current), state.chunks
                    successes = sum(e.get("state") == "success" for e in state.episodes.values())
                postfix = {"state": current.get("state", "starting"), "steps": current.get("steps", 0),
                           "chunks": chunks, "successes": successes}
                if postfix != shown or done != bar.n:
                    bar.n = done
                    bar.set_postfix(postfix)
                    shown = postfix
                if done >= args.episodes:
                    break
                dead = [n for n, p in processes.items() if p.poll() is not None]
                if dead:
                    error = f"{dead[0]} node exited early with code {processes[dead[0]].returncode}"
                    break
                if args.timeout and time.monotonic() - start > args.timeout:
                    error = f"timed out after {args.timeout} s"
                    break
                time.sleep(0.2)
    except KeyboardInterrupt:
        interrupted = True
        error = "interrupted"
    finally:
        exit_codes = {name: stop(process) for name, process in processes.items()}
        executor.shutdown()
        spinner.join(timeout=10)
        watcher.destroy_node()
        rclpy.try_shutdown(context=context)

    episodes = [state.episodes[k] for k in sorted(state.episodes)]
    summary = {
        "suite": args.suite,
        "task_id": args.task,
        "mode": settings.parameters(POLICY_NODE).get("mode"),
        "checkpoint": str(checkpoint),
        "untrained_checkpoint": untrained,
        "episodes": [{k: e.get(k) for k in ("episode", "init_state", "state", "steps", "reward", "chunks_received",
                                             "chunks_rejected", "misses")} for e in episodes],
        "success_rate": (sum(e.get("state") == "success" for e in episodes) / len(episodes)) if episodes else None,
        "steps": sum(int(e.get("steps", 0)) for e in episodes),
        "chunks": state.chunks,
        "mean_policy_latency_ms": round(sum(state.latencies_ms) / len(state.latencies_ms), 1)
        if state.latencies_ms else None,
        "wall_s": round(time.monotonic() - start, 1),
        "exit_codes": exit_codes,
        "logs": str(log_dir),
        "error": error,
        "settings": settings.as_dict(),
    }
    print(json.dumps(summary, indent=2))
    if error and not interrupted:
        for name, path in logs.items():
            print(f"--- last lines of {name} ({path}) ---\n{tail(path)}", file=sys.stderr)
    failed = bool(error) or any(code != 0 for code in exit_codes.values())
    return 130 if interrupted else int(failed)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="dtvla-sim", description=__doc__.splitlines()[0])
    parser.add_argument("--checkpoint", default=None, help="checkpoint directory (default: tiny untrained one)")
    parser.add_argument("--suite", default="libero_spatial")
    parser.add_argument("--task", type=int, default=0, help="task id within the suite")
    parser.add_argument("--init-state", type=int, default=0, help="init state of the first episode")
    parser.add_argument("--episodes", type=int, default=1)
    parser.add_argument("--mode", default=None, choices=[mode.value for mode in NODE_MODES],
                        help="default: the parameter file's (config/sim.yaml: full)")
    parser.add_argument("--max-cot-tokens", type=int, default=None,
                        help="CoT cap; default: the parameter file's (config/sim.yaml: 2048, the upstream eval cap)")
    parser.add_argument("--max-steps", type=int, default=0, help="episode step cap (0: the suite's)")
    parser.add_argument("--params-file", default=None, help="default: dtvla_policy's share/config/sim.yaml")
    parser.add_argument("--log-dir", default=None, help="node logs (default: runs/sim-<time>/)")
    parser.add_argument("--timeout", type=float, default=0.0, help="give up after this many seconds (0: never)")
    return parser


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if args.episodes < 1:
        parser.error("--episodes must be >= 1")
    return run(args)


if __name__ == "__main__":
    sys.exit(main())
