"""The "Submit to farm" button: an Open Job Description job for the node's shot, next to the script.

Writes <script>.<node>.matte.json (the matting template of `mattebox farm template matte`, with the
node's model, frame range, chunk size, steps and colour space as defaults) and
<script>.<node>.matte.params.json (the shot's paths: Input, Output = the node's alpha frames, Plate,
Trimap), so that `openjd run T --step Matte --job-param file://P` or a Deadline Cloud submission
renders it. Inputs that are not plain Reads are rendered first, for the whole range.

The template builds the `mattebox matte` command itself (training/farm), with --skip-existing: so the
node's frames that are out of date are removed first (only frames the node would keep stay). The
node's align plate, trimap channel and unmixed output go into the AlignPlate, MatteChannel and
Foreground parameters; a template without one of them is refused when that setting is on.
"""
import json
import os
import subprocess

import nuke

from plugin.host import client
from plugin.host.config import ConfigError
from plugin.nuke import cache, job, pixels
from plugin.nuke import matte as mmatte
from plugin.nuke import node as mnode


def paths(node):
    """(template, parameters) file names next to the script."""
    script = nuke.root()["name"].value()
    if not script:
        raise job.Refused("save the script first: the farm job is written next to it")
    stem = os.path.splitext(os.path.abspath(script))[0]
    return "%s.%s.matte.json" % (stem, node.name()), "%s.%s.matte.params.json" % (stem, node.name())


#: template parameters for the node's settings beyond the paths (training/farm/templates.py)
OPTIONAL = ("AlignPlate", "MatteChannel", "Foreground")


def optional(plan, template):
    """Parameter values for the plan's settings beyond the paths (AlignPlate "true"/"false", or 1/0 for
    an INT parameter); job.Refused when the template lacks a parameter for a setting that changes the result."""
    with open(template) as f:
        kinds = {p["name"]: p.get("type") for p in json.load(f).get("parameterDefinitions", [])}
    align = plan.settings["align_plate"]
    wanted = {"AlignPlate": (align, (1 if align else 0) if kinds.get("AlignPlate") == "INT" else
                             ("true" if align else "false")),
              "MatteChannel": (plan.settings["matte_channel"], plan.settings["matte_channel"]),
              "Foreground": (plan.unmixed, os.path.join(plan.folder, mnode.FOREGROUND_FILE))}
    out = {}
    for name in OPTIONAL:
        on, value = wanted[name]
        if name in kinds:
            if on or name == "AlignPlate":
                out[name] = value
        elif on:
            raise job.Refused("the farm template has no %s parameter, so a farm job cannot do what this node "
                              "does: matte it here, or change that setting for the farm" % name)
    return out


def clear_stale(plan):
    """Remove the cache folder's frames that are out of date for the node's inputs and settings: the farm
    tasks run `mattebox matte --skip-existing` (a re-queued task keeps its frames), which must keep only
    frames the node would keep. Returns how many frames."""
    stale = cache.Manifest(plan.folder).stale(plan.compute_keys(), plan.patterns)
    for frame in stale:
        for pattern in (mnode.ALPHA_FILE, mnode.FOREGROUND_FILE):
            path = cache.Manifest(plan.folder).file(pattern, frame)
            if os.path.isfile(path):
                os.remove(path)
    return len(stale)


def write(node):
    """Write the template and its parameters; returns the template's path (None when refused)."""
    try:
        template, params = paths(node)
        plan = mmatte.Plan(node)
        error = pixels.render_all(node.fullName(), plan.feeds, range(plan.first, plan.last + 1))
        if error:
            raise job.Refused(error)
        r = subprocess.run([plan.cfg.executable(), "farm", "template", "matte", "--out", template,
                            "--model", plan.model, "--frame-range=%d-%d" % (plan.first, plan.last),
                            "--chunk-size", str(node["farm_chunk"].value()), "--steps", str(plan.settings["steps"]),
                            "--colour-space", plan.settings["colour_space"]],
                           capture_output=True, text=True, timeout=120)
        if r.returncode != 0:
            raise job.Refused((r.stderr.strip().splitlines() or ["`mattebox farm` failed"])[-1])
        values = {"Input": plan.feeds["Source"].pattern, "Output": os.path.join(plan.folder, mnode.ALPHA_FILE)}
        for name, param in (("Plate", "Background"), ("Trimap", "Trimap")):
            if name in plan.feeds:
                values[param] = plan.feeds[name].pattern
        values.update(optional(plan, template))
        clear_stale(plan)
        with open(params, "w") as f:
            json.dump(values, f, indent=2)
    except (job.Refused, client.HostError, ConfigError, ValueError, OSError, subprocess.SubprocessError) as err:
        mnode.set_status(node, str(err))
        return None
    mnode.set_status(node, "farm job written: openjd run %s --step Matte --job-param file://%s (or submit it to "
                           "Deadline Cloud)" % (template, params))
    return template
