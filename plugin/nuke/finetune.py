"""The "Fine-tune on GT frames" button: train a copy of the node's model on the frames where the GT
input has a matte, as a job on the server (`mattebox finetune --remote`), and add the new model to
the node's model list when it is served.

With four or more GT frames the first and last are held back to choose the best step (early
stopping); with fewer, all are trained on.
"""
import re

from models import sequence
from plugin.nuke import catalog, job, localserver, pixels
from plugin.nuke import node as mnode


def gt_frames(node, first, last):
    """The GT frames: the GT frames knob ("1001,1010-1012"), else the GT Read's frames on disk."""
    text = node["gt_frames"].value().strip()
    if text:
        frames = set()
        for part in text.replace(" ", "").split(","):
            try:
                first_gt, last_gt = sequence.parse_range(part)
            except ValueError:
                raise job.Refused("GT frames %r is not a list like 1001,1010-1012: fix it" % text) from None
            frames.update(range(first_gt, last_gt + 1))
        return sorted(frames)
    pattern = pixels.plain_read(node.input(mnode.GT))
    if not pattern or not sequence.has_frame_token(pattern):
        raise job.Refused("type the frames where the GT input has a finished matte in 'GT frames' "
                          "(for example 1001,1010,1020)")
    frames = [f for f in sequence.frames_on_disk(pattern) if first <= f <= last]
    if not frames:
        raise job.Refused("the GT Read has no frames on disk in %d-%d: render the mattes first" % (first, last))
    return frames


class Plan:
    """A fine-tune read from the node on the main thread."""

    def __init__(self, node):
        self.node_name = node.fullName()
        self.cfg = mnode.config_for(node)
        self.base = node["model"].value()
        if not self.base or self.base == mnode.NO_MODELS:
            raise job.Refused("pick the model to fine-tune first (press Refresh models)")
        for index, what in ((mnode.SOURCE, "the shot"), (mnode.GT, "the finished mattes")):
            if node.input(index) is None:
                raise job.Refused("connect the %s input (%s)" % (mnode.INPUTS[index], what))
        self.first, self.last = mnode.frame_range(node)
        self.frames = gt_frames(node, self.first, self.last)
        self.feeds = pixels.feeds(node, mnode.cache_dir(node), ("Source", "Plate", "GT"),
                                  node["colour_space"].value().strip())
        default = re.sub(r"[^a-z0-9_-]+", "_", ("%s_%s" % (self.base, node.name())).lower())[:64]
        self.name = node["finetune_name"].value().strip() or default
        self.steps = int(node["finetune_steps"].value())
        self.colour_space = self.feeds["Source"].flag
        self.matte_channel = self.feeds["GT"].channel

    def args(self):
        """`mattebox finetune --remote` arguments."""
        held = [self.frames[0], self.frames[-1]] if len(self.frames) >= 4 else []
        train = [f for f in self.frames if f not in held]
        # NAME=VALUE: a negative frame must not read as an option
        out = ["finetune", "--remote", "--model", self.base, "--name", self.name,
               "--input", self.feeds["Source"].pattern, "--mattes", self.feeds["GT"].pattern,
               "--train-frames=" + ",".join(str(f) for f in train), "--frames=%d-%d" % (self.first, self.last),
               "--steps", str(self.steps)]
        if held:
            out += ["--held-frames=" + ",".join(str(f) for f in held)]
        if "Plate" in self.feeds:
            out += ["--background", self.feeds["Plate"].pattern]
        if self.colour_space:
            out += ["--colour-space", self.colour_space]
        if self.matte_channel:
            out += ["--matte-channel", self.matte_channel]
        return out


class FinetuneTask(job.Task):
    kind = "fine-tune"

    def __init__(self, plan):
        job.Task.__init__(self, plan.node_name, plan.cfg)
        self.plan = plan
        self.models = None

    def work(self):
        plan = self.plan
        localserver.ensure(self.cfg)
        error = self.on_main(pixels.render_all, plan.node_name, plan.feeds, plan.frames)
        if error:
            raise job.Refused(error)
        self.report(0, "fine-tuning %s on %d frames" % (plan.base, len(plan.frames)))
        result = {}

        def on_event(event):
            if event["event"] == "step":
                self.losses.append((event["step"], event["loss"]))
                self.report(event["percent"], "step %d of %d, loss %.4f" % (event["step"], event["total"], event["loss"]))
            elif event["event"] in ("done", "kept_base", "error"):
                result.update(event)

        ran = self.follow(plan.args(), on_event)
        if self.cancelled:
            return "fine-tune cancelled"
        if result.get("event") == "kept_base":  # no step beat the base on the held-back frames
            return "%s kept: %s" % (plan.base, result.get("message", "no step beat it; nothing installed"))
        if result.get("event") != "done":
            raise job.Refused("fine-tune failed: %s" % (result.get("message") or ran.failure()))
        self.models = catalog.fetch(self.cfg)
        return "fine-tuned model %s is served: pick it in the model list (held-back SAD %.3f -> %.3f)" % (
            result["name"], result["held_sad_before"], result["held_sad_after"])

    def done(self, node):
        if self.models is not None:
            mnode.set_models(node, self.models)


def start(node):
    """Main thread: plan and start the node's fine-tune (a refusal goes to the status knob)."""
    try:
        task = FinetuneTask(Plan(node))
        task.start()
    except (job.Refused, ValueError, OSError) as err:
        mnode.set_status(node, str(err))
        return None
    mnode.set_status(node, "starting the fine-tune")
    return task
