"""`dtvla-sim`: the policy node and the LIBERO sim bridge as two processes, N episodes, a JSON summary.

For machines with the ROS 2 wheels but no `ros2 launch` (no launch/launch_ros wheels exist): the second front end
of launch/sim.launch.py's parameter set (`sim_params.RUN_OPTIONS`, the same parameter file, namespace, remaps).
It watches the bridge's episode status and shows a progress bar; the run ends when either node exits (the bridge
does after its episodes), and the other is then stopped with SIGINT, as the launch file's OnProcessExit ->
Shutdown does. It exits with their exit codes. The summary reports the settings the nodes ran with: the
parameter file's values and the overrides passed. With no --checkpoint it writes (once) and uses a tiny
random-init checkpoint and says so loudly; a checkpoint exported by `make demo-checkpoint` (it carries
`demo_eval.json`) is announced with its measured held-out success beside the floors. `--record DIR` also runs
`dtvla-record` (started first, its subscriptions in place before the nodes start, stopped last) into bag DIR.
Each episode of the summary lists the CoTs of the chunks that answered its observations: the n-th CoT message goes
with the n-th chunk (the policy node publishes them in that order), and the chunk's stamp falls between the
episode's first and last observation stamps; when the two counts differ (a dry run publishes no chunks), `cots` is
null rather than guessed.
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
from rclpy.node import Node, NodeNameNonExistentError
from rclpy.qos import DurabilityPolicy, HistoryPolicy, QoSProfile, ReliabilityPolicy
from rclpy.signals import SignalHandlerOptions
from std_msgs.msg import String
from tqdm import tqdm
from trajectory_msgs.msg import JointTrajectory

from dtvla_policy.protocol import NODE_MODES
from dtvla_policy.ros import contract
from dtvla_policy.ros.recorder_node import NODE_NAME as RECORDER_NODE
from dtvla_policy.ros.recorder_node import RecorderSettings, recorded_topic_names
from dtvla_policy.ros.sim_params import BRIDGE_NODE, POLICY_NODE, RUN_OPTIONS, SimSettings, default_params_file
from dtvla_policy.topic_names import EPISODE_END_STATES

FINAL_STATUS_WAIT_S = 5.0  # after the bridge exits, for its last episode status still in the watcher's queue
RECORDER_READY_S = 60.0  # for the recorder process to start and subscribe to every topic
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
DEMO_EVAL_FILE = "demo_eval.json"  # written into the export by `make demo-checkpoint` (demos.eval_report)


def demo_banner(checkpoint: Path) -> str | None:
    """What a demo checkpoint is and how well it did, from the evaluation report it carries; None for others.

    A user watching `make sim` should know the robot runs a small model trained on this CPU, not the paper's."""
    report_path = checkpoint / DEMO_EVAL_FILE
    if not report_path.is_file():
        return None
    try:
        runs = json.loads(report_path.read_text(encoding="utf-8"))["runs"]
        results = [f"#    {label:<22} {run['successes']:>3}/{run['planned']:<3} success  "
                   f"(Wilson 95% {100 * run['wilson95'][0]:.0f}-{100 * run['wilson95'][1]:.0f}%)"
                   for label, run in runs.items()]
    except (OSError, ValueError, KeyError, TypeError, IndexError) as exc:
        results = [f"#    (its {DEMO_EVAL_FILE} is unreadable: {exc})"]
    rule = "#" * 80
    return "\n".join([rule, f"#  DEMO policy: {checkpoint}",
                      "#  A small DeepThinkVLA trained on a 2-core CPU from scripted demonstrations",
                      "#  (`make demo-checkpoint`, docs/training.md): a demo of the learning loop, not",
                      "#  the paper's 2.9B model. Held-out init states of its suite, as it was evaluated:",
                      *results, rule])


def tiny_checkpoint_dir() -> Path:
    cache = Path(os.environ.get("XDG_CACHE_HOME", Path.home() / ".cache"))
    return cache / "dtvla" / "tiny-checkpoint"


def ensure_tiny_checkpoint() -> Path:
    path = tiny_checkpoint_dir()
    if not (path / "config.json").is_file():
        from dtvla_policy.model.tiny_checkpoint import write_tiny_checkpoint  # torch only when needed

        write_tiny_checkpoint(path)
    return path


class RecorderNotReady(Exception):
    """--record: the recorder did not subscribe to every topic, so the run must not start (nothing would be lost
    silently); caught by `run`, which stops what it started. Its own type, so no other error is swallowed."""


@dataclass
class RunState:
    """What the watcher saw: final episode records, chunk stamps and CoTs, per-chunk policy latency."""

    inference_status: str  # the /diagnostics status name of this run's policy node
    episodes: dict[int, dict] = field(default_factory=dict)
    current: dict = field(default_factory=dict)
    chunk_stamps_ns: list[int] = field(default_factory=list)  # the observation stamp each chunk answered
    cots: list[str] = field(default_factory=list)
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
            if outcome in EPISODE_END_STATES and "episode" in status:
                self.episodes[int(status["episode"])] = {**status, "state": outcome}

    def on_chunk(self, msg: JointTrajectory) -> None:
        with self.lock:
            self.chunk_stamps_ns.append(msg.header.stamp.sec * 10**9 + msg.header.stamp.nanosec)

    def on_cot(self, msg: String) -> None:
        with self.lock:
            self.cots.append(msg.data)

    @property
    def chunks(self) -> int:
        return len(self.chunk_stamps_ns)

    def episode_cots(self, episode: dict) -> list[str] | None:
        """The CoTs of the chunks answering `episode`'s observations (see the module docstring), or None."""
        first, last = episode.get("first_stamp_ns", -1), episode.get("last_stamp_ns", -1)
        with self.lock:
            if len(self.cots) != len(self.chunk_stamps_ns) or first < 0:
                return None
            return [cot for stamp, cot in zip(self.chunk_stamps_ns, self.cots, strict=True) if first <= stamp <= last]

    def on_diagnostics(self, msg: DiagnosticArray) -> None:
        for status in msg.status:
            if status.name != self.inference_status:
                continue
            values = {kv.key: kv.value for kv in status.values}
            published = int(values.get("inferences", 0))
            with self.lock:
                if published > self.published_seen and "total_ms" in values:
                    self.published_seen = published
                    self.latencies_ms.append(float(values["total_ms"]))


def namespace_of(text: str | None) -> str:
    """`robot1`, `/robot1/` -> `/robot1`; empty -> '' (the root namespace)."""
    name = (text or "").strip("/")
    return f"/{name}" if name else ""


def node_command(module: str, params_file: Path, overrides: dict[str, object], namespace: str,
                 remaps: list[tuple[str, str]]) -> list[str]:
    """`python -m module --ros-args ...`: one node per process, so plain `-p name:=value` reaches just it (and,
    coming after the file, beats the file's value, as a launch file's inline parameters do)."""
    command = [sys.executable, "-m", module, "--ros-args", "--params-file", str(params_file)]
    if namespace:
        command += ["-r", f"__ns:={namespace}"]
    for source, target in remaps:
        command += ["-r", f"{source}:={target}"]
    for name, value in overrides.items():
        text = str(value).lower() if isinstance(value, bool) else value  # ROS reads `-p` values as YAML
        command += ["-p", f"{name}:={text}"]
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


def wait_for_recorder(watcher: Node, namespace: str, recorder: subprocess.Popen,
                      settings: RecorderSettings | None = None) -> str:
    """'' once the recorder subscribes to every topic it records (so it misses no message of the run), else why not.
    """
    expected = len(recorded_topic_names(settings or RecorderSettings()))
    deadline = time.monotonic() + RECORDER_READY_S
    while time.monotonic() < deadline:
        if recorder.poll() is not None:
            return f"recorder exited with code {recorder.returncode} before it was ready"
        try:
            topics = watcher.get_subscriber_names_and_types_by_node(RECORDER_NODE, namespace or "/")
        except NodeNameNonExistentError:
            topics = []
        if len(topics) >= expected:
            return ""
        time.sleep(0.1)
    return f"recorder not subscribed to its {expected} topics after {RECORDER_READY_S} s"


def run(args: argparse.Namespace) -> int:
    if args.record and Path(args.record).exists():
        print(f"dtvla-sim: --record {args.record} exists; a recording needs a new directory", file=sys.stderr)
        return 2
    untrained = args.checkpoint is None
    checkpoint = ensure_tiny_checkpoint() if untrained else Path(args.checkpoint).expanduser().resolve()
    banner = UNTRAINED_BANNER.format(path=checkpoint) if untrained else demo_banner(checkpoint)
    if banner:
        print(banner, file=sys.stderr)
    params_file = Path(args.params_file) if args.params_file else default_params_file()
    options = {name: getattr(args, name) for name in RUN_OPTIONS} | {"checkpoint": checkpoint}
    try:
        settings = SimSettings.resolve(params_file, **options)
    except (FileNotFoundError, ValueError, yaml.YAMLError) as exc:
        print(f"dtvla-sim: {exc}", file=sys.stderr)
        return 2
    bridge_params = settings.parameters(BRIDGE_NODE)
    episodes = int(bridge_params.get("num_episodes", 0))  # 0: until interrupted (or --timeout)
    namespace = namespace_of(args.namespace)
    log_dir = Path(args.log_dir or Path("runs") / time.strftime("sim-%Y%m%d-%H%M%S")).resolve()
    log_dir.mkdir(parents=True, exist_ok=True)

    cameras = [(topic, target) for topic, target in ((contract.AGENTVIEW_TOPIC, args.agentview_topic),
                                                     (contract.WRIST_TOPIC, args.wrist_topic)) if target]
    commands = {
        "policy": node_command("dtvla_policy.ros.policy_node", params_file, settings.overrides[POLICY_NODE],
                               namespace, [contract.CLOCK_REMAP, *cameras]),
        "bridge": node_command("dtvla_sim_bridge.ros.sim_bridge_node", params_file, settings.overrides[BRIDGE_NODE],
                               namespace, cameras),
    }
    if args.record:
        recorder = [sys.executable, "-m", "dtvla_policy.ros.recorder_node", str(Path(args.record).resolve()),
                    "--ros-args", *(["-r", f"__ns:={namespace}"] if namespace else [])]
        commands = {"recorder": recorder, **commands}
    state = RunState(inference_status=contract.status_name(f"{namespace}/{POLICY_NODE}", "inference"))
    context = Context()
    rclpy.init(context=context, signal_handler_options=SignalHandlerOptions.NO)
    watcher = Node("dtvla_sim_watcher", namespace=namespace or None, context=context)  # sees its robot's topics
    watcher.create_subscription(String, contract.EPISODE_STATUS_TOPIC, state.on_status, STATUS_QOS)
    watcher.create_subscription(JointTrajectory, contract.POLICY_ACTION_CHUNK, state.on_chunk, contract.COMMAND_QOS)
    watcher.create_subscription(String, contract.POLICY_CHAIN_OF_THOUGHT, state.on_cot, contract.COMMAND_QOS)
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
    label = f"{namespace} {bridge_params.get('suite')}/{bridge_params.get('task_id')}".strip()
    try:
        for name, command in commands.items():
            with logs[name].open("w") as log:
                processes[name] = subprocess.Popen(command, stdout=log, stderr=subprocess.STDOUT)
            if name == "recorder":
                error = wait_for_recorder(watcher, namespace, processes[name])
                if error:
                    raise RecorderNotReady(error)
        shown: dict = {}
        with tqdm(total=episodes or None, unit="episode", desc=label, file=sys.stderr, mininterval=1.0) as bar:
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
                if episodes and done >= episodes:
                    break
                dead = [n for n, p in processes.items() if p.poll() is not None]
                if dead:
                    error = ended_early(dead[0], processes[dead[0]].returncode, state, episodes)
                    break
                if args.timeout and time.monotonic() - start > args.timeout:
                    error = f"timed out after {args.timeout} s"
                    break
                time.sleep(0.2)
    except KeyboardInterrupt:
        interrupted = True
        error = "interrupted"
    except RecorderNotReady:
        pass  # `error` already says why; the nodes started so far are stopped below
    finally:
        # either node ending ends the run (as sim.launch.py's OnProcessExit -> Shutdown): stop the other; the
        # recorder last, so it writes everything the nodes sent
        exit_codes = {name: stop(processes[name]) for name in sorted(processes, key=lambda n: n == "recorder")}
        executor.shutdown()
        spinner.join(timeout=10)
        watcher.destroy_node()
        rclpy.try_shutdown(context=context)

    episode_records = [state.episodes[k] for k in sorted(state.episodes)]
    summary = {
        "namespace": namespace or "/",
        "suite": bridge_params.get("suite"),
        "task_id": bridge_params.get("task_id"),
        "mode": settings.parameters(POLICY_NODE).get("mode"),
        "checkpoint": str(checkpoint),
        "untrained_checkpoint": untrained,
        "episodes": [{k: e.get(k) for k in ("episode", "init_state", "state", "steps", "reward", "chunks_received",
                                             "chunks_rejected", "chunks_stale", "misses")}
                     | {"cots": state.episode_cots(e)} for e in episode_records],
        "success_rate": (sum(e.get("state") == "success" for e in episode_records) / len(episode_records))
        if episode_records else None,
        "steps": sum(int(e.get("steps", 0)) for e in episode_records),
        "chunks": state.chunks,
        "mean_policy_latency_ms": round(sum(state.latencies_ms) / len(state.latencies_ms), 1)
        if state.latencies_ms else None,
        "wall_s": round(time.monotonic() - start, 1),
        "exit_codes": exit_codes,
        "logs": str(log_dir),
        "bag": str(Path(args.record).resolve()) if args.record else None,
        "error": error,
        "settings": settings.as_dict(),
    }
    print(json.dumps(summary, indent=2))
    if error and not interrupted:
        for name, path in logs.items():
            print(f"--- last lines of {name} ({path}) ---\n{tail(path)}", file=sys.stderr)
    failed = bool(error) or any(code != 0 for code in exit_codes.values())
    return 130 if interrupted else int(failed)


def ended_early(name: str, code: int, state: RunState, episodes: int) -> str:
    """'' when the bridge exited 0 after all its episodes (their final status may trail the exit: wait for it),
    else why the run ended."""
    if name == "bridge" and code == 0 and episodes:
        deadline = time.monotonic() + FINAL_STATUS_WAIT_S
        while time.monotonic() < deadline:
            with state.lock:
                if len(state.episodes) >= episodes:
                    return ""
            time.sleep(0.05)
        return f"bridge exited after {len(state.episodes)} of {episodes} episodes"
    return f"{name} node exited early with code {code}"


def build_parser() -> argparse.ArgumentParser:
    """dtvla-sim's options: `RUN_OPTIONS` (as sim.launch.py's arguments), then the launcher's own."""
    parser = argparse.ArgumentParser(prog="dtvla-sim", description=__doc__.splitlines()[0])
    for name, option in RUN_OPTIONS.items():
        if name == "checkpoint":
            parser.add_argument("--checkpoint", default=None,
                                help="checkpoint directory (default: a tiny UNTRAINED one, written once)")
        elif name == "mode":
            parser.add_argument("--mode", default=None, choices=[mode.value for mode in NODE_MODES],
                                help=f"{option.help} (default: the parameter file's)")
        else:
            parser.add_argument(f"--{name.replace('_', '-')}", type=option.parse, default=None,
                                help=f"{option.help} (default: the parameter file's)")
    parser.add_argument("--params-file", default=None, help="default: dtvla_policy's share/config/sim.yaml")
    parser.add_argument("--namespace", default="", help="ROS namespace of both nodes, e.g. robot1 (default: none)")
    parser.add_argument("--agentview-topic", default="", help=f"remap {contract.AGENTVIEW_TOPIC} (both nodes)")
    parser.add_argument("--wrist-topic", default="", help=f"remap {contract.WRIST_TOPIC} (both nodes)")
    parser.add_argument("--log-dir", default=None, help="node logs (default: runs/sim-<time>/)")
    parser.add_argument("--record", default=None, metavar="DIR",
                        help="also record the run with dtvla-record into bag DIR (a new directory)")
    parser.add_argument("--timeout", type=float, default=0.0, help="give up after this many seconds (0: never)")
    return parser


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if args.episodes is not None and args.episodes < 0:
        parser.error("--episodes must be >= 0 (0: until interrupted)")
    return run(args)


if __name__ == "__main__":
    sys.exit(main())
