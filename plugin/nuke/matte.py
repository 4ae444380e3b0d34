"""The Matte button: matte the node's frames that are missing or out of date, as a background job.

On the main thread the node is read into a plan (its knobs, the inputs as file patterns with their
colour space and matte channel). The job's thread then makes sure a server answers, refuses a model
whose required input is not connected, computes a cache key per frame (walking the graph upstream,
each node's knobs read on the main thread), renders the inputs that are not plain Reads (back on the
main thread), runs `mattebox matte` in path mode for each contiguous run of stale frames, records each
finished frame, and finally points the node's internal Reads at the alpha (and foreground) frames.
The job's notices and the frames whose clean plate could not be aligned end up in the status knob.
"""
import os

from plugin.host import client
from plugin.nuke import cache, catalog, job, localserver, pixels
from plugin.nuke import node as mnode


class Plan:
    """What one Matte press will do, read from the node on the main thread."""

    def __init__(self, node):
        self.node_name = node.fullName()
        self.cfg = mnode.config_for(node)
        self.model = node["model"].value()
        if not self.model or self.model == mnode.NO_MODELS:
            raise job.Refused("pick a model first (press Refresh models to list the server's models)")
        if node.input(mnode.SOURCE) is None:
            raise job.Refused("connect the Source input (the shot to matte)")
        self.first, self.last = mnode.frame_range(node)
        self.folder = mnode.cache_dir(node)
        override = node["colour_space"].value().strip()
        self.feeds = pixels.feeds(node, self.folder, ("Source", "Plate", "Trimap"), override)
        self.unmixed = mnode.unmixed(node)
        trimap = self.feeds.get("Trimap")
        self.settings = {"model": self.model, "steps": int(node["steps"].value()),
                         "colour_space": self.feeds["Source"].flag,
                         "matte_channel": trimap.channel if trimap is not None else "",
                         "align_plate": bool(mnode.value(node, "align_plate", False)) and "Plate" in self.feeds,
                         "output_mode": mnode.value(node, "output_mode", mnode.SOURCE_ALPHA)}
        self.patterns = (mnode.ALPHA_FILE, mnode.FOREGROUND_FILE) if self.unmixed else (mnode.ALPHA_FILE,)
        self.keys = None  # frame -> cache key, computed on the job's thread by compute_keys()

    def compute_keys(self, on_main=pixels._direct):
        """The cache key of every frame (off the main thread: on_main runs the knob reads there), with the
        model's digest from the last list fetched from the server (fetched when there is none)."""
        digest = catalog.find(self.cfg, self.model).get("digest", "")
        trees = pixels.graphs(self.feeds, on_main)
        self.keys = {f: cache.key(self.settings, {n: pixels.describe(t, f) for n, t in trees.items()}, digest)
                     for f in range(self.first, self.last + 1)}
        return self.keys

    def args(self, first, last):
        """`mattebox matte` arguments for frames first-last."""
        # --frames=A-B: a negative first frame must not read as an option; transport: path mode, and for a
        # server on this machine auto (the command falls back to shared memory, with a notice, when that
        # server may not read the files); a remote server reads the studio's storage or says how to allow it
        out = ["matte", "--model", self.model, "--input", self.feeds["Source"].pattern,
               "--output", os.path.join(self.folder, mnode.ALPHA_FILE), "--frames=%d-%d" % (first, last),
               "--transport", "auto" if client.is_local(self.cfg.address()) else "path"]
        for name, flag in (("Plate", "--background"), ("Trimap", "--trimap")):
            if name in self.feeds:
                out += [flag, self.feeds[name].pattern]
        if self.settings["matte_channel"]:
            out += ["--matte-channel", self.settings["matte_channel"]]
        if self.settings["steps"]:
            out += ["--steps", str(self.settings["steps"])]
        if self.settings["colour_space"]:
            out += ["--colour-space", self.settings["colour_space"]]
        if self.settings["align_plate"]:
            out += ["--align-plate"]
        if self.unmixed:
            out += ["--foreground", os.path.join(self.folder, mnode.FOREGROUND_FILE)]
        return out


class MatteTask(job.Task):
    kind = "matte"

    def __init__(self, plan):
        job.Task.__init__(self, plan.node_name, plan.cfg)
        self.plan = plan
        self.shown = False

    def work(self):
        plan = self.plan
        localserver.ensure(self.cfg)
        catalog.fetch(self.cfg)  # the server's list now: a model re-trained since has a new digest
        model = catalog.find(self.cfg, plan.model)
        connected = [i for i, index in mnode.MODEL_INPUTS.items() if mnode.INPUTS[index] in plan.feeds]
        missing = catalog.missing_inputs(model, connected)
        if missing:
            raise job.Refused("%s needs the %s input: connect it, or pick a model that does not need it"
                              % (plan.model, " and ".join(mnode.input_label(i) for i in missing)))
        self.report(0, "checking which frames are up to date")
        plan.compute_keys(self.on_main)
        manifest = cache.Manifest(plan.folder)
        todo = manifest.stale(plan.keys, plan.patterns)
        total = len(plan.keys)
        if not todo:
            self.shown = True
            return "all %d frames are up to date (%s)" % (total, plan.model)
        self.report(0, "rendering inputs" if any(f.render for f in plan.feeds.values()) else "starting")
        error = self.on_main(pixels.render_all, plan.node_name, plan.feeds, todo)
        if error:
            raise job.Refused(error)
        done, errors = 0, []

        def on_event(event):
            nonlocal done
            if event["event"] == "frame":
                manifest.record(event["frame"], plan.keys[event["frame"]])
                done += 1
                self.report(100.0 * done / len(todo), "frame %d done (%d of %d)" % (event["frame"], done, len(todo)))
            elif event["event"] == "notice":
                self.report(self.percent, "note: %s" % event["message"])

        for first, last in pixels.runs(todo):
            ran = self.follow(plan.args(first, last), on_event)
            errors += ran.errors
            self.note(ran)
            if self.cancelled:
                break
            if ran.returncode not in (0, 1) and not errors:
                errors.append(ran.failure())
        self.shown = True
        kept = total - len(todo) + done
        if self.cancelled:
            text = "cancelled: %d of %d frames done and kept; press Matte to do the rest" % (kept, total)
        elif errors:
            self.failed = True
            text = ("%d of %d frames done; %d failed (%s): fix that and press Matte to redo only the missing frames"
                    % (kept, total, len(todo) - done, errors[0]))
        else:
            text = "%d frames matted with %s (%d were up to date)" % (done, plan.model, total - len(todo))
        return self.with_warnings(text)

    def done(self, node):
        if self.shown:
            mnode.show_alpha(node, self.plan.folder, self.plan.first, self.plan.last, self.plan.unmixed)


def start(node):
    """Main thread: plan and start the node's Matte job (a refusal goes to the status knob)."""
    try:
        task = MatteTask(Plan(node))
        task.start()
    except (job.Refused, ValueError, OSError) as err:
        mnode.set_status(node, str(err))
        return None
    mnode.set_status(node, "starting")
    return task
