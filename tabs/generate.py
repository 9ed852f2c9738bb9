"""The Generate tab: class-conditional samples of a GAN or VAE, and a VAE's latent interpolation between seeds."""
from __future__ import annotations

import gradio as gr

from cnnimg_hub import pipelines
from cnnimg_hub._hub import model_from_config
from cnnimg_hub.spec import spec_of
from cnnimg_hub.tasks import GENERATE

from .common import BATCHED_SLOT, BATCHER, MODEL_SLOT, UI_ONLY, ModelStore, fast_png, handler, model_picker, refuse, \
    user_errors


def class_index(model, class_name) -> int:
    """The index of a class given by name (or by its number)."""
    names = list(model.label_names)
    if class_name in names:
        return names.index(class_name)
    if str(class_name).strip().isdigit() and int(class_name) < len(names):
        return int(class_name)
    raise refuse(f"{class_name!r} is not a class of this model; choose one of: {', '.join(names)}.")


def create_tab(store: ModelStore) -> None:
    @handler
    def generate(model_name, repo, class_name, seed, num_images, progress=gr.Progress()):
        """Draw new images of one class from a small class-conditional generator (GAN or VAE, 28x28 Fashion-MNIST).

        Args:
            model_name: a shipped generator, e.g. "generate-fashion-mnist-gan" or "generate-fashion-mnist-vae".
            repo: a Hub repo id ("user/name" or "user/name@revision") used instead of model_name; "" for none.
            class_name: the class to draw, by name (e.g. "Sneaker") or number.
            seed: any whole number 0 or above; the same seed gives the same images.
            num_images: how many images, 1 to 64.
        Returns:
            The images and the run info.
        """
        progress(0.2, desc="Loading model")
        model = store.get(GENERATE.name, model_name, repo)
        progress(0.5, desc="Generating")
        # concurrent requests for this model are decoded in one batch (see BATCHER)
        images, info = BATCHER((id(model), store.device, store.precision), lambda requests: pipelines.generate_batch(
            model, requests, device=store.device, precision=store.precision),
            (class_index(model, class_name), num_images, seed or 0))
        return images, info.summary()

    @handler
    def interpolate(model_name, repo, class_name, seed_a, seed_b, steps, progress=gr.Progress()):
        """Decode the spherical path between the latents of two seeds (a smooth morph between two samples).

        Args:
            model_name: a shipped generator, e.g. "generate-fashion-mnist-gan" or "generate-fashion-mnist-vae".
            repo: a Hub repo id used instead of model_name; "" for none.
            class_name: the class, by name (e.g. "Bag") or number.
            seed_a: the seed of the first image.
            seed_b: the seed of the last image.
            steps: how many images along the path, 2 to 64.
        Returns:
            The images along the path and the run info.
        """
        progress(0.2, desc="Loading model")
        model = store.get(GENERATE.name, model_name, repo)
        progress(0.5, desc="Interpolating")
        images, info = pipelines.interpolate(model, class_index(model, class_name), seed_a or 0, seed_b or 0, steps,
                                             device=store.device, precision=store.precision)
        return images, info.summary()

    def model_changed(model_name, repo):
        """The class choices of the chosen generator; a model that cannot be loaded leaves them as they are and says
        why."""
        if not model_name and not (repo or "").strip():
            return gr.update(), gr.update(), ""
        try:
            model = user_errors(store.get)(GENERATE.name, model_name, repo)
        except gr.Error as e:
            return gr.update(), gr.update(), f"**{e.message}**"
        names = list(model.label_names)
        return (gr.update(choices=names, value=names[0] if names else None),
                gr.update(visible=spec_of(model).kind in ("gan", "vae")), "")

    default = store.names(GENERATE.name)[:1]
    spec = store.spec(default[0]) if default else None
    # the class names of the default model (its config may leave them to the class): an untrained copy tells
    classes = list(model_from_config(store.shipped[default[0]]).label_names) if default else []
    with gr.Tab(GENERATE.title, id=GENERATE.key):
        with gr.Row():
            with gr.Column():
                model, repo = model_picker(store, GENERATE.name)
                label = gr.Dropdown(classes, value=classes[0] if classes else None, label="Class",
                                    allow_custom_value=True)
                seed = gr.Number(0, label="Seed", precision=0, minimum=0)
                count = gr.Slider(1, pipelines.MAX_GENERATE, value=16, step=1, label="Number of images")
                run = gr.Button("Generate", elem_id="generate-run", variant="primary")
            with gr.Column():
                gallery = fast_png(gr.Gallery(elem_id="generate-gallery", label="Samples", columns=5, height="auto",
                                              format="png", elem_classes="pixelated", buttons=["download"]))
                info = gr.Markdown()
        with gr.Group(visible=bool(spec and spec.kind in ("gan", "vae"))) as interp_row:
            gr.Markdown("**Latent interpolation**: decode the spherical path between two seeds' latents.")
            with gr.Row():
                seed_a, seed_b = gr.Number(0, label="Seed A", precision=0), gr.Number(1, label="Seed B", precision=0)
                steps = gr.Slider(2, 16, value=8, step=1, label="Steps")
                run_interp = gr.Button("Interpolate")
            # whole frames: "contain" (not the gallery's default crop) and a height that follows the rows
            strip = fast_png(gr.Gallery(label="Interpolation", columns=8, height="auto", object_fit="contain",
                                        format="png", elem_classes="pixelated", buttons=["download"]))
        if classes:
            gr.Examples([[model.value, "", c, 0, 16] for c in classes[:4]], [model, repo, label, seed, count],
                        [gallery, info], fn=generate, cache_examples=True, cache_mode="lazy")
    run.click(generate, [model, repo, label, seed, count], [gallery, info], api_name="generate", **BATCHED_SLOT,
              api_description="Draw new images of one class from a small class-conditional GAN or VAE.")
    run_interp.click(interpolate, [model, repo, label, seed_a, seed_b, steps], [strip, info], api_name="interpolate",
                     api_description="Decode the path between two seeds' latents (a morph between two samples).",
                     **MODEL_SLOT)
    gr.on([model.change, repo.submit], model_changed, [model, repo], [label, interp_row, info], **UI_ONLY)
