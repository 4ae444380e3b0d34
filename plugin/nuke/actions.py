"""What the node's buttons and the Mattebox menu do (main thread). Each returns at once: slow work runs
on a background thread that posts its result back to the main thread."""
import threading

import nuke

from plugin.host import client
from plugin.host.config import ConfigError
from plugin.nuke import catalog, farm as mfarm, finetune as mfinetune, job, localserver, matte as mmatte
from plugin.nuke import node as mnode


def create():
    """Menu "Mattebox > Matte": a new node, its model list filled from the server in the background."""
    group = mnode.create()
    selected = [n for n in nuke.selectedNodes() if n is not group]
    if len(selected) == 1:
        group.setInput(mnode.SOURCE, selected[0])
    refresh(group)
    return group


def refresh(node):
    """Refresh models: ask the server for its models (starting a local server when allowed)."""
    cfg = mnode.config_for(node)
    mnode.set_status(node, "asking %s for its models" % cfg.address())
    thread = threading.Thread(target=_refresh, args=(cfg, node.fullName()), daemon=True)
    thread.start()
    return thread


def _refresh(cfg, node_name):
    try:
        localserver.ensure(cfg)
        models = catalog.fetch(cfg)
        text = "%d models on %s" % (len(models), cfg.address())
    except (client.HostError, ConfigError) as err:
        models, text = None, str(err)
    nuke.executeInMainThread(_show_models, (node_name, models, text))


def _show_models(node_name, models, text):
    node = nuke.toNode(node_name)
    if node is None:
        return
    if models is not None:
        mnode.set_models(node, models)
    mnode.set_status(node, text)


def matte(node):
    return mmatte.start(node)


def cancel(node):
    task = job.find(node.fullName())
    if task is None:
        mnode.set_status(node, "no job is running for this node")
        return
    task.cancel()
    mnode.set_status(node, "cancelling (finished frames are kept)")


def finetune(node):
    return mfinetune.start(node)


def farm(node):
    return mfarm.write(node)
