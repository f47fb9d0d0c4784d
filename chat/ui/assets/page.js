// The page's own script: names for Gradio's icon-only controls, a skip link, and Enter that
// confirms a Chinese input method's candidate without sending the message.
// assets.py wraps this file in a function of (labels, css) run on page load: labels holds the
// sentences of chat/i18n.py in "en" and "zh", the browser's language picks one.
(labels, css) => {
  if (window.__chatPage) return;
  window.__chatPage = true;
  const text = labels[navigator.language.toLowerCase().startsWith("zh") ? "zh" : "en"];

  const style = document.createElement("style");
  style.textContent = css;
  document.head.appendChild(style);

  // Gradio's textbox sends on a keypress of Enter and does not look at isComposing: an input
  // method that lets the Enter confirming a candidate through as a keypress (Chromium with
  // some IMEs does) would send a half-typed message. Stop such keys before Gradio sees them;
  // the input method still gets them (keydown's default action is left alone). A keypress
  // after a keydown the input method handled (keyCode 229: Safari ends the composition first)
  // is stopped too.
  let composing = false;
  let imeKeydown = false;
  document.addEventListener("compositionstart", () => { composing = true; }, true);
  document.addEventListener("compositionend", () => { composing = false; }, true);
  const fromInputMethod = (event) => event.isComposing || composing || event.keyCode === 229;
  document.addEventListener("keydown", (event) => {
    imeKeydown = fromInputMethod(event);
    if (event.key === "Enter" && imeKeydown) event.stopImmediatePropagation();
  }, true);
  document.addEventListener("keypress", (event) => {
    if (event.key !== "Enter" || !(imeKeydown || fromInputMethod(event))) return;
    event.stopImmediatePropagation();
    event.preventDefault(); // no newline in the textbox either
  }, true);

  // Icon-only buttons Gradio leaves without a name, redundant alt text in the footer, roles.
  const names = [
    ["#chat-input button.submit-button", text.send],
    ["#chat-input button.stop-button", text.stop],
    ["button.icon-button[aria-label='']", text.details],
  ];
  const name = () => {
    for (const [selector, label] of names) {
      for (const el of document.querySelectorAll(selector)) {
        if (el.getAttribute("aria-label") !== label) el.setAttribute("aria-label", label);
      }
    }
    for (const img of document.querySelectorAll("footer button img[alt]")) {
      if (img.alt && img.closest("button").textContent.trim()) img.alt = "";
    }
    // The chat's example prompts: a "list" of buttons (no list items) is a group.
    for (const list of document.querySelectorAll(".examples[role='list']")) list.setAttribute("role", "group");
  };
  new MutationObserver(name).observe(document.body, { childList: true, subtree: true });
  name();

  // A skip link, first in the tab order: keyboard users reach the message box in one step.
  const skip = document.createElement("a");
  skip.href = "#chat-input";
  skip.className = "skip-link";
  skip.textContent = text.skip;
  skip.addEventListener("click", (event) => {
    event.preventDefault();
    document.querySelector("#chat-input textarea")?.focus();
  });
  document.body.prepend(skip);
}
