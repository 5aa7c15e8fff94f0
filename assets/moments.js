// Moments in the page: players that play a moment (not the whole video), buttons that seek a
// player to a moment, and the result cards' "more like this" / "more from this video" buttons,
// which hand the result's id to a hidden Gradio textbox and press its hidden button (Gradio
// renders results as HTML, which cannot call the server itself). Delegated from the document,
// so it works for every result Gradio inserts later.
(() => {
  const num = (el, name) => parseFloat(el.getAttribute(name));

  // A card's player loops over its moment: back to data-start when it passes data-end.
  document.addEventListener("timeupdate", (event) => {
    const v = event.target;
    if (!(v instanceof HTMLVideoElement) || !v.hasAttribute("data-end")) return;
    const start = num(v, "data-start"), end = num(v, "data-end");
    if (v.currentTime >= end - 0.05 || v.currentTime < start - 0.5) v.currentTime = start;
  }, true);
  // Where media fragments (#t=start,end) are not honoured, start at the moment anyway.
  document.addEventListener("loadedmetadata", (event) => {
    const v = event.target;
    if (v instanceof HTMLVideoElement && v.hasAttribute("data-start") && v.currentTime < num(v, "data-start") - 0.5) {
      v.currentTime = num(v, "data-start");
    }
  }, true);

  function player(button) {
    const id = button.getAttribute("data-player");
    if (id) return document.getElementById(id) || document.querySelector(id);
    const card = button.closest("figure");
    return card ? card.querySelector("video") : null;
  }

  function ask(boxId, buttonId, value) {
    const box = document.querySelector(`#${boxId} textarea, #${boxId} input`);
    const go = document.getElementById(buttonId);
    if (!box || !go) return;
    box.value = value;
    box.dispatchEvent(new Event("input", {bubbles: true}));
    setTimeout(() => go.click(), 0);  // after Gradio has taken the new value
  }

  document.addEventListener("click", (event) => {
    const button = event.target.closest("[data-seek], [data-like], [data-more]");
    if (!button) return;
    event.preventDefault();
    if (button.hasAttribute("data-seek")) {
      const v = player(button);
      if (!v) return;
      const start = num(button, "data-seek");
      v.currentTime = start;
      v.setAttribute("data-seeked-to", String(start));
      const playing = v.play();
      if (playing && playing.catch) playing.catch(() => {});
      document.querySelectorAll("[data-seek].vs-active").forEach((b) => b.classList.remove("vs-active"));
      button.classList.add("vs-active");
    } else if (button.hasAttribute("data-like")) {
      ask("vs-like-id", "vs-like-go", button.getAttribute("data-like"));
    } else {
      ask("vs-more-id", "vs-more-go", button.getAttribute("data-more"));
      const panel = document.getElementById("vs-more");
      if (panel) panel.scrollIntoView({behavior: "smooth", block: "start"});
    }
  });
})();
