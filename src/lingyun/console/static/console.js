// Lingyun console: copy buttons and the playground's streaming chat. No dependencies.
"use strict";

function copyFrom(id, button) {
  const el = document.getElementById(id);
  if (!el) return;
  const text = el.value !== undefined && el.tagName === "INPUT" ? el.value : el.textContent;
  if (el.select) el.select();
  const done = () => { button.dataset.copied = "1"; };
  if (navigator.clipboard && window.isSecureContext) {
    navigator.clipboard.writeText(text).then(done, done);
  } else {
    done();
  }
}

function price(option, name) {
  const v = parseFloat(option.dataset[name] || "0");
  return Number.isFinite(v) ? v : 0;
}

function playground(form) {
  const reply = document.getElementById("pg-reply");
  const stats = document.getElementById("pg-stats");
  const send = document.getElementById("pg-send");
  const stop = document.getElementById("pg-stop");
  let controller = null;

  stop.addEventListener("click", () => { if (controller) controller.abort(); });

  form.addEventListener("submit", async (event) => {
    event.preventDefault();
    const key = document.getElementById("pg-key").value.trim();
    const model = document.getElementById("pg-model");
    const message = document.getElementById("pg-message").value;
    const option = model.selectedOptions[0];
    reply.textContent = "";
    stats.textContent = "";
    stats.dataset.status = "streaming";
    controller = new AbortController();
    send.disabled = true;
    stop.disabled = false;
    const started = performance.now();
    let ttft = null;
    let usage = null;
    try {
      const resp = await fetch(form.dataset.endpoint, {
        method: "POST",
        headers: { "Content-Type": "application/json", "Authorization": "Bearer " + key },
        body: JSON.stringify({
          model: model.value, stream: true, stream_options: { include_usage: true },
          messages: [{ role: "user", content: message }],
        }),
        signal: controller.signal,
      });
      if (!resp.ok) {
        let text = resp.status + "";
        try { text += " " + (await resp.json()).error.message; } catch (e) { /* not JSON */ }
        stats.textContent = text;
        stats.dataset.status = "error";
        return;
      }
      const reader = resp.body.getReader();
      const decoder = new TextDecoder();
      let buffer = "";
      for (;;) {
        const { value, done } = await reader.read();
        if (done) break;
        buffer += decoder.decode(value, { stream: true });
        let cut;
        while ((cut = buffer.indexOf("\n\n")) >= 0) {
          const event = buffer.slice(0, cut);
          buffer = buffer.slice(cut + 2);
          for (const line of event.split("\n")) {
            if (!line.startsWith("data:")) continue;
            const data = line.slice(5).trim();
            if (data === "[DONE]") continue;
            const chunk = JSON.parse(data);
            if (chunk.usage) usage = chunk.usage;
            const delta = chunk.choices && chunk.choices[0] && chunk.choices[0].delta;
            if (delta && delta.content) {
              if (ttft === null) ttft = performance.now() - started;
              reply.textContent += delta.content;
            }
          }
        }
      }
      stats.dataset.status = "done";
    } catch (err) {
      stats.dataset.status = err.name === "AbortError" ? "stopped" : "error";
      if (err.name !== "AbortError") stats.textContent = String(err);
    } finally {
      controller = null;
      send.disabled = false;
      stop.disabled = true;
      const parts = [];
      if (ttft !== null) parts.push("TTFT " + Math.round(ttft) + " ms");
      if (usage) {
        const cached = (usage.prompt_tokens_details && usage.prompt_tokens_details.cached_tokens) || 0;
        const cost = ((usage.prompt_tokens - cached) * price(option, "input")
          + cached * price(option, "cached") + usage.completion_tokens * price(option, "output")) / 1e6;
        parts.push(usage.prompt_tokens + " + " + usage.completion_tokens + " tokens");
        parts.push(cost.toFixed(6) + " " + (option.dataset.currency || ""));
      }
      if (stats.dataset.status === "stopped") parts.push("stopped");
      if (parts.length) stats.textContent = parts.join(" · ");
    }
  });
}

document.addEventListener("DOMContentLoaded", () => {
  for (const button of document.querySelectorAll("button[data-copy]")) {
    button.addEventListener("click", () => copyFrom(button.dataset.copy, button));
  }
  const form = document.getElementById("playground");
  if (form) playground(form);
});
