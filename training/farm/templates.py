"""Open Job Description job templates for the farm: matte a shot in frame chunks, fine-tune a model.

The templates follow `jobtemplate-2023-09`, the format AWS Deadline Cloud runs and `openjd run`
runs on one machine. Each is a plain dict built from a typed dataclass whose fields are the job's
parameters: a field's value is the parameter's default (None: no default, the submitter must give
it) and its metadata the OpenJD name, type and description (also the help of the matching
`mattebox farm template` flag). OpenJD joins a PATH parameter's default to the template's folder and
openjd-cli refuses one outside it, so a path default is written relative to that folder and must lie
inside it (a template kept above the shot, e.g. in the shot's folder); a template for many shots
leaves the paths to the submitter (`openjd run -p Input=...`).

Matting (`matting_template`): one step, "Matte", over FrameRange in contiguous chunks of ChunkSize
frames (the TASK_CHUNKING extension: task parameter Frames of type CHUNK[INT]; a task gets its chunk
as "first-last"). A step environment starts one `mattebox serve` per session on the worker: its
onEnter script launches the server in the background (stdin, stdout and stderr detached, so the
action ends while the server runs on; pid in server.pid, log in server.log, both in the session's
working directory), waits for its ready file server.json ({"address": ..., "pid": ...}), and hands
the address to the session's tasks as MATTEBOX_SERVER (an `openjd_env` line; `mattebox matte` reads
its --server from there). The server binds loopback and may read and write only the folders of the
shot's paths (it creates the folders of Output and Foreground). onExit sends the server SIGTERM, so
frames in flight finish, waits for it to exit (SIGKILL after 60 s) and copies its log into the job's
log. Each task runs `mattebox matte --frames FIRST-LAST --transport path --skip-existing --progress
openjd` (through the embedded matte.sh, which adds `--align-plate` when AlignPlate is true and then
execs the command, so a cancel's SIGTERM reaches it): the server reads and writes the frames itself,
so the shot must be on storage the worker mounts, and a task that is re-queued after a worker died or
was cancelled keeps the frames its first run finished and mattes only the rest.

Fine-tuning (`finetune_template`): one step, "Finetune", one task running `mattebox finetune` with
`--progress openjd`.

Workers need bash and ps (Linux or macOS) and Mattebox installed: MatteboxCommand (default: the
`mattebox` of the environment that wrote the template; a STRING, as it names a program on the
worker, not a file of the job). The server's scripts are embedded in the
template (`embeddedFiles`), so the template file is all a submitter needs.
"""
from __future__ import annotations

import json
import os
import shutil
import sysconfig
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any

SPECIFICATION = "jobtemplate-2023-09"

#: a task asked to stop (SIGTERM) cancels its job on the server, which finishes the frame in flight
CANCELATION = {"mode": "NOTIFY_THEN_TERMINATE", "notifyPeriodInSeconds": 30}

START_SERVER = r"""#!/usr/bin/env bash
# Start this session's matting server: start_server.sh MATTEBOX SESSION_DIR OUTPUT FOREGROUND [SHOT_PATH...]
# It may read and write only the folders of OUTPUT, FOREGROUND (created here) and of the shot's paths
# (empty ones skipped) and runs on after this script (log server.log, pid server.pid in SESSION_DIR)
# until stop_server.sh.
set -euo pipefail
mattebox=$1 dir=$2
shift 2
for written in "$1" "$2"; do
  [[ -z $written ]] || mkdir -p "$(dirname "$written")"
done
roots=()
for path in "$@"; do
  [[ -z $path ]] || roots+=(--allow-root "$(dirname "$path")")
done
"$mattebox" serve --port 0 --ready-file "$dir/server.json" "${roots[@]}" </dev/null >"$dir/server.log" 2>&1 &
pid=$!
echo "$pid" >"$dir/server.pid"
until [[ -f $dir/server.json ]]; do
  if ! kill -0 "$pid" 2>/dev/null || (( SECONDS > 300 )); then
    kill "$pid" 2>/dev/null || true
    cat "$dir/server.log"
    echo "openjd_fail: the matting server did not start (its log is above)"
    exit 1
  fi
  sleep 0.1
done
echo "mattebox server: $(<"$dir/server.json")"
echo "openjd_env: MATTEBOX_SERVER=$(sed 's/.*"address": *"\([^"]*\)".*/\1/' "$dir/server.json")"
"""

STOP_SERVER = r"""#!/usr/bin/env bash
# Stop this session's matting server: stop_server.sh SESSION_DIR. SIGTERM lets the frames in flight
# finish; a server still running after 60 s is killed. Its log goes into the job's log.
set -uo pipefail
dir=$1
[[ -f $dir/server.pid ]] || exit 0
pid=$(<"$dir/server.pid")
# still our server: an exited one (even unreaped) has no arguments, a recycled pid other ones
serving() { ps -ww -o args= -p "$pid" | grep -qF -- "--ready-file $dir/server.json"; }
state="had exited before the end of the session"
if serving; then
  kill -TERM "$pid"
  while serving; do
    if (( SECONDS > 60 )); then
      echo "the matting server $pid did not stop within 60 s: killing it"
      kill -KILL "$pid"
      break
    fi
    sleep 0.1
  done
  state="stopped"
fi
cat "$dir/server.log"
echo "mattebox server $pid $state"
"""


MATTE = r"""#!/usr/bin/env bash
# One task's frames: matte.sh ALIGN_PLATE MATTEBOX ARGS... runs `MATTEBOX matte ARGS...`, adding
# --align-plate when ALIGN_PLATE is true. exec: the task's process is mattebox itself, so a cancel's
# SIGTERM reaches it (it cancels the job on the server, which finishes the frame in flight).
set -euo pipefail
align=$1 mattebox=$2
shift 2
case $align in
  true|TRUE|True) set -- "$@" --align-plate ;;
  false|FALSE|False) ;;
  *) echo "openjd_fail: AlignPlate is '$align': true or false"; exit 1 ;;
esac
exec "$mattebox" matte "$@"
"""


def default_mattebox() -> str:
    """The `mattebox` executable of this Python environment (a bare "mattebox" when it has none)."""
    return shutil.which("mattebox", path=sysconfig.get_path("scripts")) or "mattebox"


def parameter(name: str, kind: str, text: str, default: Any = None, **extra: Any) -> Any:
    """A dataclass field that is a job parameter: its OpenJD `name` and `kind` (STRING, PATH, INT),
    `text` (description and command line help), `default` (None: none, the submitter gives it; a
    function: called for it) and further OpenJD keys (minValue, ...)."""
    meta = {"name": name, "type": kind, "text": text, "extra": extra}
    if callable(default):
        return field(default_factory=default, metadata=meta)
    return field(default=default, metadata=meta)


def mattebox_parameter() -> Any:
    return parameter("MatteboxCommand", "STRING", "the mattebox executable on the workers", default_mattebox)


@dataclass
class MattingShot:
    """The matting job's parameters and their defaults."""

    input: str | None = parameter("Input", "PATH", "image sequence of the shot (####, %04d or $F4 pattern)")
    output: str | None = parameter("Output", "PATH", "alpha sequence to write (pattern; .exr, .png, .tif)")
    model: str | None = parameter("Model", "STRING", "model name (see `mattebox models`)")
    trimap: str = parameter("Trimap", "PATH", "trimap file or pattern (0/128/255) for trimap-based models; "
                                              "empty: none", "")
    background: str = parameter("Background", "PATH", "clean plate file or pattern for plate-based models; "
                                                      "empty: none", "")
    frame_range: str = parameter("FrameRange", "STRING", "frames to matte, e.g. 1001-1100", "1001-1100")
    chunk_size: int = parameter("ChunkSize", "INT", "frames per task", 10, minValue=1)
    steps: int = parameter("Steps", "INT", "recursive inference passes (models that have them; 0: the model's "
                                           "default)", 0, minValue=0)
    colour_space: str = parameter("ColourSpace", "STRING", "colour space of input and plate (empty: what the "
                                                           "file says, else EXR/float scene_linear, integer "
                                                           "files sRGB)", "")
    foreground: str = parameter("Foreground", "PATH", "unmixed (straight) foreground RGB to write beside the "
                                                      "alpha (pattern; .exr, .png, .tif); empty: none", "")
    align_plate: str = parameter("AlignPlate", "STRING", "align a hand-held clean plate to each frame "
                                                         "(true or false)", "false", allowedValues=["true", "false"])
    matte_channel: str = parameter("MatteChannel", "STRING", "channel the trimap is read from: A, R, G, B, Y "
                                                             "or a channel name (empty: the file's alpha, else "
                                                             "its only channel, else luminance)", "")
    mattebox: str = mattebox_parameter()


@dataclass
class FinetuneShot:
    """The fine-tuning job's parameters and their defaults."""

    base_model: str | None = parameter("BaseModel", "STRING", "model to fine-tune (see `mattebox models`)")
    input: str | None = parameter("Input", "PATH", "image sequence of the shot (####, %04d or $F4 pattern)")
    mattes: str | None = parameter("Mattes", "PATH", "finished alpha of the training frames (pattern)")
    train_frames: str | None = parameter("TrainFrames", "STRING", "frames with a finished matte to train on")
    name: str | None = parameter("Name", "STRING", "name of the fine-tuned model")
    background: str = parameter("Background", "PATH", "clean plate file or pattern for plate-based models; "
                                                      "empty: none", "")
    steps: int = parameter("Steps", "INT", "training steps", 1000, minValue=1)
    matte_channel: str = parameter("MatteChannel", "STRING", "channel the mattes are read from: A, R, G, B, Y "
                                                             "or a channel name (empty: the file's alpha, else "
                                                             "its only channel, else luminance)", "")
    mattebox: str = mattebox_parameter()


def relative_default(path: str, folder: str | Path, name: str) -> str:
    """`path` relative to the template's `folder`, as OpenJD reads the default of PATH parameter
    `name`; ValueError when it lies outside that folder (openjd-cli refuses such a default)."""
    rel = os.path.relpath(os.path.abspath(path), os.path.abspath(folder))
    if rel.split(os.sep)[0] == os.pardir:
        raise ValueError(f"{path} is outside {os.path.abspath(folder)}: OpenJD joins a path default to the "
                         f"template's folder, so write the template above the shot or give {name} at submission")
    return rel


def parameter_definitions(shot: MattingShot | FinetuneShot, folder: str | Path) -> list[dict]:
    """OpenJD `parameterDefinitions` of the shot's fields, in field order, for a template written
    into `folder` (PATH defaults are written relative to it; ValueError for one outside it)."""
    out = []
    for f in fields(shot):
        meta = f.metadata
        definition = {"name": meta["name"], "type": meta["type"], "description": meta["text"], **meta["extra"]}
        value = getattr(shot, f.name)
        if meta["type"] == "PATH" and value:
            value = relative_default(value, folder, meta["name"])
        if value is not None:
            definition["default"] = value
        out.append(definition)
    return out


def mattebox_action(*args: str) -> dict:
    """Run MatteboxCommand with `args`; SIGTERM, then 30 s to stop, when the task is cancelled."""
    return {"command": "{{Param.MatteboxCommand}}", "args": list(args), "cancelation": CANCELATION}


def embedded_script(name: str, filename: str, text: str) -> dict:
    return {"name": name, "type": "TEXT", "filename": filename, "runnable": True, "data": text}


def matting_template(shot: MattingShot, folder: str | Path) -> dict:
    """Matte FrameRange in chunks, each session's tasks sharing one matting server on the worker."""
    session = "{{Session.WorkingDirectory}}"
    server = {
        "name": "MattingServer",
        "description": "one `mattebox serve` on the worker for the session's tasks",
        "script": {
            "embeddedFiles": [embedded_script("Start", "start_server.sh", START_SERVER),
                              embedded_script("Stop", "stop_server.sh", STOP_SERVER)],
            "actions": {
                "onEnter": {"command": "{{Env.File.Start}}",
                            "args": ["{{Param.MatteboxCommand}}", session, "{{Param.Output}}",
                                     "{{Param.Foreground}}", "{{Param.Input}}", "{{Param.Trimap}}",
                                     "{{Param.Background}}"]},
                "onExit": {"command": "{{Env.File.Stop}}", "args": [session]},
            },
        },
    }
    frames = {"name": "Frames", "type": "CHUNK[INT]", "range": "{{Param.FrameRange}}",
              "chunks": {"defaultTaskCount": "{{Param.ChunkSize}}", "rangeConstraint": "CONTIGUOUS"}}
    # --skip-existing: a re-queued task (its worker died, or it was cancelled) keeps the frames already written
    matte = {"command": "{{Task.File.Matte}}", "cancelation": CANCELATION,
             "args": ["{{Param.AlignPlate}}", "{{Param.MatteboxCommand}}", "--model", "{{Param.Model}}",
                      "--input", "{{Param.Input}}", "--trimap", "{{Param.Trimap}}",
                      "--matte-channel", "{{Param.MatteChannel}}", "--background", "{{Param.Background}}",
                      "--output", "{{Param.Output}}", "--foreground", "{{Param.Foreground}}",
                      "--frames", "{{Task.Param.Frames}}", "--colour-space", "{{Param.ColourSpace}}",
                      "--steps", "{{Param.Steps}}", "--transport", "path", "--skip-existing",
                      "--progress", "openjd"]}
    return {
        "specificationVersion": SPECIFICATION,
        "extensions": ["TASK_CHUNKING"],
        "name": "Mattebox matte",
        "parameterDefinitions": parameter_definitions(shot, folder),
        "steps": [{"name": "Matte", "parameterSpace": {"taskParameterDefinitions": [frames]},
                   "stepEnvironments": [server],
                   "script": {"embeddedFiles": [embedded_script("Matte", "matte.sh", MATTE)],
                              "actions": {"onRun": matte}}}],
    }


def finetune_template(shot: FinetuneShot, folder: str | Path) -> dict:
    """Fine-tune BaseModel on the shot's finished frames as one task."""
    train = mattebox_action("finetune", "--model", "{{Param.BaseModel}}", "--input", "{{Param.Input}}",
                            "--mattes", "{{Param.Mattes}}", "--train-frames", "{{Param.TrainFrames}}",
                            "--matte-channel", "{{Param.MatteChannel}}", "--name", "{{Param.Name}}",
                            "--background", "{{Param.Background}}", "--steps", "{{Param.Steps}}",
                            "--progress", "openjd")
    return {
        "specificationVersion": SPECIFICATION,
        "name": "Mattebox finetune",
        "parameterDefinitions": parameter_definitions(shot, folder),
        "steps": [{"name": "Finetune", "script": {"actions": {"onRun": train}}}],
    }


def write_template(template: dict, path: str | Path) -> None:
    """Write `template` as JSON (.json) or YAML (.yaml, .yml: needs PyYAML, which openjd-cli brings;
    scripts as literal blocks)."""
    path = Path(path)
    if path.suffix == ".json":
        path.write_text(json.dumps(template, indent=2) + "\n")
        return
    if path.suffix not in (".yaml", ".yml"):
        raise ValueError(f"{path}: a job template is written as .json, .yaml or .yml")
    import yaml

    class Dumper(yaml.SafeDumper):
        pass

    Dumper.add_representer(str, lambda d, s: d.represent_scalar("tag:yaml.org,2002:str", s,
                                                                 style="|" if "\n" in s else None))
    path.write_text(yaml.dump(template, Dumper=Dumper, sort_keys=False, width=120))
