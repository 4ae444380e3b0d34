"""The "Submit to farm" button: an Open Job Description job for the node's shot, next to the script.

Writes <script>.<node>.matte.json (the matting template of `mattebox farm template matte`, with the
node's model, frame range, chunk size, steps and colour space as defaults) and
<script>.<node>.matte.params.json (the shot's paths: Input, Output = the node's alpha frames, Plate,
Trimap), so that `openjd run T --step Matte --job-param file://P` or a Deadline Cloud submission
renders it. Inputs that are not plain Reads are rendered first, for the whole range.
"""
import json
import os
import subprocess

import nuke

from plugin.host import client
from plugin.host.config import ConfigError
from plugin.nuke import job, pixels
from plugin.nuke import node as mnode


def paths(node):
    """(template, parameters) file names next to the script."""
    script = nuke.root()["name"].value()
    if not script:
        raise job.Refused("save the script first: the farm job is written next to it")
    stem = os.path.splitext(os.path.abspath(script))[0]
    return "%s.%s.matte.json" % (stem, node.name()), "%s.%s.matte.params.json" % (stem, node.name())


def write(node):
    """Write the template and its parameters; returns the template's path (None when refused)."""
    try:
        template, params = paths(node)
        model = node["model"].value()
        if not model or model == mnode.NO_MODELS:
            raise job.Refused("pick a model first (press Refresh models)")
        if node.input(mnode.SOURCE) is None:
            raise job.Refused("connect the Source input (the shot to matte)")
        first, last = mnode.frame_range(node)
        folder = mnode.cache_dir(node)
        feeds = pixels.feeds(node, folder, ("Source", "Plate", "Trimap"))
        error = pixels.render_all(node.fullName(), feeds, range(first, last + 1))
        if error:
            raise job.Refused(error)
        cfg = mnode.config_for(node)
        r = subprocess.run([cfg.executable(), "farm", "template", "matte", "--out", template, "--model", model,
                            "--frame-range", "%d-%d" % (first, last), "--chunk-size", str(node["farm_chunk"].value()),
                            "--steps", str(node["steps"].value()), "--colour-space", node["colour_space"].value()],
                           capture_output=True, text=True, timeout=120)
        if r.returncode != 0:
            raise job.Refused((r.stderr.strip().splitlines() or ["`mattebox farm` failed"])[-1])
        values = {"Input": feeds["Source"].pattern, "Output": os.path.join(folder, mnode.ALPHA_FILE)}
        for name, param in (("Plate", "Background"), ("Trimap", "Trimap")):
            if name in feeds:
                values[param] = feeds[name].pattern
        with open(params, "w") as f:
            json.dump(values, f, indent=2)
    except (job.Refused, client.HostError, ConfigError, ValueError, OSError, subprocess.SubprocessError) as err:
        mnode.set_status(node, str(err))
        return None
    mnode.set_status(node, "farm job written: openjd run %s --step Matte --job-param file://%s (or submit it to "
                           "Deadline Cloud)" % (template, params))
    return template
