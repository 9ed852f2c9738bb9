"""The app's tabs, one module each: `create_tab(store)` builds the tab's layout and wires its events.

`common` holds what they share (limits, model store, upload and result widgets, errors, ZeroGPU), `restore` the
results panel of the three restoration tabs. No task rule is here: the tabs call `cnnimg_hub.pipelines` and
`cnnimg_hub.compare`.
"""
from . import classify, denoise, generate, inpaint, upscale

TABS = (classify, generate, upscale, inpaint, denoise)  # in the order they are shown
