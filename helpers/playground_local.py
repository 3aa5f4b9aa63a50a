"""A generation playground for a self-hosted model: sliders for temperature, top_p, max_new_tokens, sampling on/off.

`generation_playground(lm)` returns a :class:`Playground` whose `.widget` is shown in Jupyter; everything it
does goes through :func:`helpers.inference.generate`, and its state (`.controls`, `.last`) can be driven
without a browser — the tests set the sliders and call `.button.click()`.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from .inference import Generation, generate
from .playground import WidgetPanel, _box
from .selfhost import LoadedModel


@dataclass
class Playground(WidgetPanel):
    """The widgets of one playground and the last generation it made."""

    widget: Any
    controls: dict[str, Any]
    button: Any
    output: Any
    stats: Any
    history: list[Generation] = field(default_factory=list)



def generation_playground(lm: LoadedModel, prompt: str = "Explain quantization in one sentence.",
                          max_tokens_limit: int = 256) -> Playground:
    """Build the playground: change a knob, press Generate, see the text and the tokens/s it took."""
    import ipywidgets as w

    controls: dict[str, Any] = {
        "prompt": w.Textarea(value=prompt, description="prompt", layout=w.Layout(width="95%", height="60px")),
        "do_sample": w.Checkbox(value=False, description="sample (off = greedy, deterministic)"),
        "temperature": w.FloatSlider(value=0.7, min=0.05, max=2.0, step=0.05, description="temperature"),
        "top_p": w.FloatSlider(value=0.95, min=0.05, max=1.0, step=0.05, description="top_p"),
        "max_new_tokens": w.IntSlider(value=32, min=1, max=max_tokens_limit, description="max tokens"),
        "seed": w.IntText(value=0, description="seed"),
    }
    button = w.Button(description="Generate", button_style="primary")
    output = w.Textarea(value="", description="reply", disabled=True, layout=w.Layout(width="95%", height="120px"))
    stats = w.HTML(value="")

    def sync_enabled(_change: Any = None) -> None:  # temperature/top_p only matter when sampling
        for name in ("temperature", "top_p", "seed"):
            controls[name].disabled = not controls["do_sample"].value

    controls["do_sample"].observe(sync_enabled, names="value")
    sync_enabled()
    pg = Playground(widget=None, controls=controls, button=button, output=output, stats=stats)

    def on_click(_b: Any) -> None:
        c = {k: v.value for k, v in controls.items()}
        button.disabled = True
        stats.value = "generating…"
        try:
            g = generate(lm, c["prompt"], max_new_tokens=c["max_new_tokens"], temperature=c["temperature"],
                         top_p=c["top_p"], do_sample=c["do_sample"], seed=c["seed"] if c["do_sample"] else None)
            pg.history.append(g)
            output.value = g.text
            mode = f"sampled, T={c['temperature']}, top_p={c['top_p']}" if c["do_sample"] else "greedy"
            stats.value = (f"{g.new_tokens} tokens in {g.seconds:.2f} s = <b>{g.tokens_per_s:.1f} tokens/s</b> "
                           f"on {lm.device} ({mode})")
        except Exception as exc:  # show it in the widget: a callback's exception would vanish silently
            stats.value = f"<span style='color:#b91c1c'>{type(exc).__name__}: {exc}</span>"
            raise
        finally:
            button.disabled = False

    button.on_click(on_click)
    pg.widget = _box(w, [controls["prompt"], w.HBox([controls["do_sample"], controls["seed"]]),
                         controls["temperature"], controls["top_p"], controls["max_new_tokens"],
                         button, output, stats])  # a saved notebook names it in words, as 01's does
    return pg
