"""The Classify tab: top-5 labels of an upload, and the small image the classifier really saw."""
from __future__ import annotations

import gradio as gr

from cnnimg_hub import pipelines
from cnnimg_hub.spec import InferenceSpec, spec_of
from cnnimg_hub.tasks import CLASSIFY

from .common import BATCHED_SLOT, BATCHER, EXAMPLES_DIR, UI_ONLY, ModelStore, handler, image_input, model_picker, \
    open_upload, result_image, user_errors

# test-split images of each classifier's own classes (examples/classify/<model>-<class>.png), and one photo of
# none of them (an astronaut for the CIFAR-10 model), which shows how unsure the model is off its classes
OUTSIDE = [("astronaut.jpg", "classify-cifar10")]


def preprocessing_text(spec: InferenceSpec) -> str:
    """What the classifier's spec says its input is, in one line."""
    c, h, w = spec.input_size or ["?", "?", "?"]
    return (f"**Preprocessing** (from config.json): {spec.color_mode or 'RGB'}, resize the shorter side to "
            f"{h} px ({spec.interpolation or 'bicubic'}), {spec.crop or 'center'} crop to {w}x{h}, values in "
            f"{spec.input_range or [0, 1]}; mean/std normalisation inside the model.")


def create_tab(store: ModelStore) -> None:
    @handler
    def classify(image, model_name, repo, progress=gr.Progress()):
        """Classify an image with a small CNN (CIFAR-10 or Fashion-MNIST classes): the five most probable labels.

        Args:
            image: the image to classify (PNG, JPEG or WebP; transparent pixels count as white).
            model_name: a shipped classifier, e.g. "classify-cifar10" or "classify-fashion-mnist".
            repo: a Hub repo id ("user/name" or "user/name@revision") used instead of model_name; "" for none.
        Returns:
            The top-5 labels with probabilities, the model's input image, its preprocessing and the run info.
        """
        image = open_upload(image)
        progress(0.2, desc="Loading model")
        model = store.get(CLASSIFY.name, model_name, repo)
        progress(0.5, desc="Classifying")
        # concurrent requests for this model go through it in one batch (see BATCHER)
        top, info = BATCHER((id(model), store.device, store.precision), lambda images: pipelines.classify_batch(
            model, images, top_k=5, device=store.device, precision=store.precision), image)
        return ({label: p for label, p in top}, info.used["input"], preprocessing_text(spec_of(model)), info.summary())

    @user_errors
    def describe(model_name, repo):
        if not model_name and not (repo or "").strip():
            return ""
        return preprocessing_text(spec_of(store.get(CLASSIFY.name, model_name, repo)))

    with gr.Tab(CLASSIFY.title, id=CLASSIFY.key):
        with gr.Row():
            with gr.Column():
                image = image_input(label="Image (upload or paste)", elem_id="classify-image", height=320)
                model, repo = model_picker(store, CLASSIFY.name)
                run = gr.Button("Classify", elem_id="classify-run", variant="primary")
            with gr.Column():
                labels = gr.Label(elem_id="classify-labels", num_top_classes=5, label="Top 5")
                prep = gr.Markdown(preprocessing_text(store.spec(model.value)) if model.value else "")
                seen = result_image("What the model sees", height=128, width=128, elem_classes="pixelated")
                info = gr.Markdown()
        outputs = [labels, seen, prep, info]
        rows = [[str(p), f"classify-{p.stem.rsplit('-', 1)[0]}", ""] for p in sorted((EXAMPLES_DIR / "classify").glob("*.png"))]
        rows += [[str(EXAMPLES_DIR / name), m, ""] for name, m in OUTSIDE if (EXAMPLES_DIR / name).exists()]
        rows = [r for r in rows if r[1] in store.names(CLASSIFY.name)]
        if rows:
            gr.Examples(rows, inputs=[image, model, repo], fn=classify, outputs=outputs, cache_examples=True,
                        cache_mode="lazy", label="Examples: test images of each model's classes, and a photo of none")
    run.click(classify, [image, model, repo], outputs, api_name="classify", **BATCHED_SLOT,
              api_description="Classify an image with a small CNN: the top-5 labels and their probabilities.")
    model.change(describe, [model, repo], prep, **UI_ONLY)
