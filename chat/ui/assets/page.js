// The page's own script: names for Gradio's controls in the page's language, a skip link, Enter
// that neither sends a blank message nor a Chinese input method's half-typed one, Escape that
// closes what is open, and the conversation list as one Tab stop.
// assets.py wraps this file in a function of (labels, css) run on page load: labels holds the
// sentences of chat/i18n/page.py in "en" and "zh", the browser's language picks one.
(labels, css) => {
  if (window.__chatPage) return;
  window.__chatPage = true;
  const text = labels[navigator.language.toLowerCase().startsWith("zh") ? "zh" : "en"];
  const WIDE = 1024; // px: the sidebar sits beside the chat from here (chat/ui/sidebar.py)
  const box = () => document.querySelector("#chat-input textarea");
  const blank = () => !(box()?.value || "").trim();

  const style = document.createElement("style");
  style.textContent = css;
  document.head.appendChild(style);

  // Gradio's textbox sends on a keypress of Enter and does not look at isComposing: an input
  // method that lets the Enter confirming a candidate through as a keypress (Chromium with
  // some IMEs does) would send a half-typed message. Stop such keys before Gradio sees them;
  // the input method still gets them (keydown's default action is left alone). A keypress
  // after a keydown the input method handled (keyCode 229: Safari ends the composition first)
  // is stopped too. Enter in a blank box sends nothing either.
  let composing = false;
  let imeKeydown = false;
  document.addEventListener("compositionstart", () => { composing = true; }, true);
  document.addEventListener("compositionend", () => { composing = false; }, true);
  const fromInputMethod = (event) => event.isComposing || composing || event.keyCode === 229;
  const inBox = (event) => event.target === box();
  document.addEventListener("keydown", (event) => {
    imeKeydown = fromInputMethod(event);
    if (event.key === "Enter" && imeKeydown) event.stopImmediatePropagation();
    if (event.key === "Escape") closeOne(event);
  }, true);
  document.addEventListener("keypress", (event) => {
    if (event.key !== "Enter") return;
    const halfTyped = imeKeydown || fromInputMethod(event);
    if (!halfTyped && !(inBox(event) && !event.shiftKey && blank())) return;
    event.stopImmediatePropagation();
    event.preventDefault(); // no newline in the textbox either
  }, true);

  // Send is disabled while the box is blank (its click would send an empty message).
  const sendState = () => {
    const send = document.querySelector("#chat-input button.submit-button");
    if (send && send.disabled !== blank()) send.disabled = blank();
  };
  document.addEventListener("input", sendState, true);

  // Escape closes the topmost open thing: the delete confirmation, else the sidebar over the chat.
  const visible = (el) => el !== null && el.offsetParent !== null;
  function closeOne(event) {
    if (visible(document.querySelector("#delete-yes"))) {
      document.querySelector("#delete-no")?.click();
      document.querySelector("#delete")?.focus();
    } else if (window.innerWidth < WIDE && document.querySelector("#sidebar.open")) {
      document.querySelector("#sidebar .toggle-button")?.click();
      box()?.focus();
    } else return;
    event.preventDefault();
  }

  // Names in the page's language for what Gradio leaves unnamed or names in English only.
  const byLabel = {};
  for (const [name, en] of [["sidebar", "Toggle Sidebar"], ["reset", "Reset to default value"],
    ["copy", "Copy message"], ["copy_all", "Copy conversation"], ["clear", "Clear"], ["like", "Like"],
    ["liked", "Liked"], ["dislike", "Dislike"], ["disliked", "Disliked"], ["retry", "Retry"],
    ["undo", "Undo"], ["edit", "Edit"], ["upload", "common.upload"], ["chat_log", "chatbot conversation"],
    ["footer_nav", "Gradio footer navigation"]]) {
    for (const label of [en, labels.en[name], labels.zh[name]]) byLabel[label] = name;
  }
  byLabel["赞"] = "like";
  byLabel["踩"] = "dislike";
  byLabel["清空对话"] = "clear";
  const FEEDBACK = { like: "like", liked: "like", dislike: "dislike", disliked: "dislike" };
  const PREFIXES = [["range slider for ", "range"], ["number input for ", "number"]];
  const setName = (el, label) => {
    if (el.getAttribute("aria-label") !== label) el.setAttribute("aria-label", label);
    if (el.hasAttribute("title") && el.title !== label) el.title = label;
  };
  const name = () => {
    for (const [selector, key] of [["#chat-input button.submit-button", "send"],
      ["#chat-input button.stop-button", "stop"], ["button.icon-button[aria-label='']", "details"]]) {
      for (const el of document.querySelectorAll(selector)) setName(el, text[key]);
    }
    for (const el of document.querySelectorAll("[aria-label]")) {
      const label = el.getAttribute("aria-label");
      const key = byLabel[label];
      if (key === "clear" && !el.closest("#chatbot")) continue; // a file box's Clear clears the file
      if (key) {
        setName(el, text[key]);
        if (FEEDBACK[key]) el.dataset.feedback = FEEDBACK[key]; // Like before Dislike (page.css)
        continue;
      }
      for (const [prefix, kind] of PREFIXES) {
        if (label.startsWith(prefix)) setName(el, text[kind].replace("{name}", label.slice(prefix.length)));
      }
    }
    for (const img of document.querySelectorAll("footer button img[alt], button img[alt]")) {
      if (img.alt && img.closest("button").getAttribute("aria-label")) img.alt = "";
    }
    // The chat's example prompts: a "list" of buttons (no list items) is a group.
    for (const list of document.querySelectorAll(".examples[role='list']")) list.setAttribute("role", "group");
    conversations();
    sendState();
  };

  // The conversation list is one radio group: one Tab stop, arrow keys move through it. An empty
  // list says why (nothing yet, or nothing matches the search).
  const conversations = () => {
    const list = document.querySelector("#conversation-list");
    if (!list) return;
    const radios = list.querySelectorAll("input[type='radio']");
    for (const radio of radios) if (radio.name !== "conversation-list") radio.name = "conversation-list";
    const search = document.querySelector("#conversation-search input, #conversation-search textarea");
    const query = (search?.value || "").trim();
    const empty = radios.length ? "" : query ? text.no_match.replace("{search}", query) : text.no_conversations;
    if (list.dataset.empty !== empty) list.dataset.empty = empty;
  };

  // The delete confirmation takes the focus when it opens (Escape or Cancel give it back).
  let confirming = false;
  const confirmFocus = () => {
    const yes = document.querySelector("#delete-yes");
    const open = visible(yes);
    if (open && !confirming) yes.focus();
    confirming = open;
  };

  new MutationObserver(() => { name(); confirmFocus(); }).observe(document.body, {
    childList: true, subtree: true, attributes: true, attributeFilter: ["aria-label", "disabled", "class", "style"],
  });
  document.addEventListener("input", conversations, true);
  name();

  // Copy message and Copy conversation copy what the reader sees as the reply: Gradio also copies
  // the titles of the notices beside it and an empty "assistant:" entry for each notice.
  let copying = false;
  document.addEventListener("click", (event) => {
    const button = event.target.closest?.("#chatbot button");
    copying = Boolean(button) && [text.copy, text.copy_all].includes(button.getAttribute("aria-label"));
  }, true);
  const notices = () => new Set(
    [...document.querySelectorAll("#chatbot .thought-group")].map((el) => el.innerText.trim()).filter(Boolean)
  );
  const cleaned = (value) => {
    const titles = notices();
    const parts = value.split(/\n\s*\n/);
    const kept = parts.filter((part) => !titles.has(part.trim()) && !/^assistant:\s*$/.test(part.trim()));
    return kept.length === parts.length ? value : kept.filter((part) => part.trim()).join("\n\n");
  };
  if (navigator.clipboard?.writeText) {
    const write = navigator.clipboard.writeText.bind(navigator.clipboard);
    navigator.clipboard.writeText = (value) => {
      const wanted = copying && typeof value === "string" ? cleaned(value) : value;
      copying = false;
      return write(wanted);
    };
  }

  // A skip link, first in the tab order and above the sidebar: keyboard users reach the message
  // box in one step.
  const skip = document.createElement("a");
  skip.href = "#chat-input";
  skip.className = "skip-link";
  skip.textContent = text.skip;
  skip.addEventListener("click", (event) => {
    event.preventDefault();
    box()?.focus();
  });
  document.body.prepend(skip);
}
