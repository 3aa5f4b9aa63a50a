"""Chat playgrounds for the API: a single-turn one (notebook 01) and a multi-turn chat with history (notebook 02).

`api_playground(client)` returns an :class:`ApiPlayground` whose `.widget` is shown in Jupyter. Everything it
does goes through :func:`helpers.catalog.complete`, so the cost shown is the dated price table's. It works
headless: tests set the controls and call `.button.click()`.
"""

from __future__ import annotations

import html
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from .catalog import DEFAULT_TIERS, Reply, complete


class WidgetPanel:
    """What both playgrounds share: `.controls` by name, `.history` of results, `.last`, and `.set(**values)`."""

    controls: dict[str, Any]
    history: list[Any]

    @property
    def last(self) -> Any:
        """The most recent result, or None before the first click."""
        return self.history[-1] if self.history else None

    def set(self, **values: Any):
        """Set controls by name, e.g. `.set(temperature=0.2, prompt="Hi")`; an unknown name is a clear error."""
        for name, value in values.items():
            if name not in self.controls:
                raise KeyError(f"No control {name!r}; have {sorted(self.controls)}")
            self.controls[name].value = value
        return self


@dataclass
class ApiPlayground(WidgetPanel):
    """The widgets of one playground, the replies it got, and the last error (if any)."""

    widget: Any
    controls: dict[str, Any]
    button: Any
    answer: Any
    cost: Any
    history: list[Reply] = field(default_factory=list)
    error: Exception | None = None

    @property
    def total_cost_usd(self) -> float:
        return sum(r.cost_usd or 0.0 for r in self.history)


def _box(w: Any, children: list[Any]) -> Any:
    """The playground's widgets in one column; a saved copy of the notebook (no live kernel) names it in words."""

    class Playground(w.VBox):
        def __repr__(self) -> str:  # the text a saved notebook shows where the live widgets were
            return "[the playground's widgets: live when you run this notebook in Jupyter or Colab]"

    return Playground(children)


def api_playground(client: Any, models: Sequence[str] = DEFAULT_TIERS, *, model: str | None = None,
                   prompt: str = "What is the capital of France?", system: str | None = None) -> ApiPlayground:
    """Build the playground over an SDK client (La Plateforme or the local endpoint; the code is the same)."""
    import ipywidgets as w

    models = list(models)
    if model and model not in models:
        models.insert(0, model)
    controls: dict[str, Any] = {
        "model": w.Dropdown(options=models, value=model or models[0], description="model"),
        "temperature": w.FloatSlider(value=0.3, min=0.0, max=1.5, step=0.05, description="temperature"),
        "max_tokens": w.IntSlider(value=128, min=1, max=1024, description="max tokens"),
        "prompt": w.Textarea(value=prompt, description="prompt", layout=w.Layout(width="95%", height="70px")),
    }
    button = w.Button(description="Send", button_style="primary", icon="paper-plane")
    answer = w.Textarea(value="", description="answer", disabled=True,
                        layout=w.Layout(width="95%", height="140px"))
    cost = w.HTML(value="")
    pg = ApiPlayground(widget=None, controls=controls, button=button, answer=answer, cost=cost)

    def on_click(_button: Any) -> None:
        c = {k: v.value for k, v in controls.items()}
        button.disabled = True
        cost.value = "waiting for the model…"
        pg.error = None
        try:
            messages = ([{"role": "system", "content": system}] if system else []) + \
                [{"role": "user", "content": c["prompt"]}]
            reply = complete(client, c["model"], messages, temperature=c["temperature"], max_tokens=c["max_tokens"])
            pg.history.append(reply)
            answer.value = reply.text
            price = f"<b>${reply.cost_usd:.6f}</b>" if reply.cost_usd is not None else "no price in data/models.csv"
            cost.value = (f"{reply.model}: {reply.prompt_tokens} prompt + {reply.completion_tokens} completion tokens, "
                          f"{reply.latency_s:.2f} s, {price} "
                          f"(session total ${pg.total_cost_usd:.6f}; finish: {reply.finish_reason})")
        except Exception as exc:  # shown in the widget: an exception in a callback would vanish silently
            pg.error = exc
            cost.value = f"<span style='color:#b91c1c'>{html.escape(type(exc).__name__)}: {html.escape(str(exc))}</span>"
        finally:
            button.disabled = False

    button.on_click(on_click)
    pg.widget = _box(w, [controls["model"], controls["temperature"], controls["max_tokens"], controls["prompt"],
                         button, answer, cost])
    return pg


# ---------------------------------------------------------------- a multi-turn chat (notebook 02)
@dataclass
class ChatPlayground(WidgetPanel):
    """A chat with history: the widgets, the :class:`helpers.conversation.Conversation` behind them, the last error."""

    widget: Any
    controls: dict[str, Any]
    button: Any
    reset_button: Any
    transcript: Any
    counter: Any
    conversation: Any
    error: Exception | None = None

    @property
    def history(self) -> list[Any]:  # WidgetPanel's `.last` reads this: the turns so far
        return self.conversation.turns


def chat_playground(client: Any, model: str, *, system: str = "You are a helpful assistant for Harbourline Bank.",
                    max_tokens: int = 128, temperature: float = 0.3) -> ChatPlayground:
    """A multi-turn chat: system prompt box, message box, Send and Reset, the answer streamed in, tokens and cost so far."""
    import ipywidgets as w

    from .catalog import show_cost
    from .conversation import Conversation

    convo = Conversation(client, model, system=system, max_tokens=max_tokens, temperature=temperature)
    controls: dict[str, Any] = {
        "system": w.Textarea(value=system, description="system", layout=w.Layout(width="95%", height="50px")),
        "prompt": w.Textarea(value="", description="you", layout=w.Layout(width="95%", height="50px")),
    }
    button = w.Button(description="Send", button_style="primary", icon="paper-plane")
    reset_button = w.Button(description="Reset", icon="trash")
    transcript = w.HTML(value="")
    counter = w.HTML(value="")
    pg = ChatPlayground(widget=None, controls=controls, button=button, reset_button=reset_button,
                        transcript=transcript, counter=counter, conversation=convo)

    def render(streaming: str | None = None) -> None:
        rows = [f"<p><b>you:</b> {html.escape(t.user)}<br><b>{html.escape(model)}:</b> {html.escape(t.assistant)}</p>"
                for t in convo.turns]
        if streaming is not None:
            rows.append(f"<p><b>you:</b> {html.escape(controls['prompt'].value)}<br><b>{html.escape(model)}:</b> "
                        f"{html.escape(streaming)}▌</p>")
        transcript.value = "".join(rows)
        counter.value = (f"{len(convo.turns)} turn(s) · {convo.tokens} tokens sent and received · "
                         f"{show_cost(convo.cost_usd)} at the dated prices")

    def on_send(_button: Any) -> None:
        button.disabled = True
        pg.error = None
        convo.system = controls["system"].value
        shown: list[str] = []

        def on_text(piece: str) -> None:  # each piece is shown as it arrives
            shown.append(piece)
            render("".join(shown))

        try:
            convo.send(controls["prompt"].value, on_text=on_text)
            controls["prompt"].value = ""
            render()
        except Exception as exc:  # shown in the widget: an exception in a callback would vanish silently
            pg.error = exc
            counter.value = f"<span style='color:#b91c1c'>{html.escape(type(exc).__name__)}: {html.escape(str(exc))}</span>"
        finally:
            button.disabled = False

    def on_reset(_button: Any) -> None:
        convo.reset()
        pg.error = None
        render()

    button.on_click(on_send)
    reset_button.on_click(on_reset)
    render()
    pg.widget = _box(w, [controls["system"], transcript, controls["prompt"], w.HBox([button, reset_button]), counter])
    return pg
