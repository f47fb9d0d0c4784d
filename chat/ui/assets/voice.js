// Voice on the chat page: a microphone in the message box, a speaker button on each reply, and
// two settings (send a recording at once; read every reply). It talks to the server's own
// OpenAI-style routes (/v1/audio/transcriptions, /v1/audio/speech) with the page's cookies, so
// the door's login and rate limit apply as to any client; the browser's own speech synthesis
// speaks instead when the server says so (--tts browser). chat/ui/voice.py wraps this file in a
// function of (labels, config, css): labels in "en" and "zh" (the browser's language picks),
// config {stt, tts: "server" | "browser" | "off", maxSeconds}.
(labels, config, css) => {
  if (window.__chatVoice) return;
  window.__chatVoice = true;
  const language = navigator.language || "en";
  const text = labels[language.toLowerCase().startsWith("zh") ? "zh" : "en"];
  const folder = new URL(".", window.location.href); // /v1 sits beside the page, behind any prefix
  const route = (path) => new URL(path, folder).toString();

  const style = document.createElement("style");
  style.textContent = css;
  document.head.appendChild(style);

  // Icons drawn here (no emoji font is needed); the buttons' names come from aria-label.
  const icon = (path) => `<svg viewBox="0 0 24 24" width="18" height="18" aria-hidden="true" fill="none"
    stroke="currentColor" stroke-width="2" stroke-linecap="round" stroke-linejoin="round">${path}</svg>`;
  const MIC_ICON = icon('<rect x="9" y="3" width="6" height="11" rx="3"/><path d="M5 11a7 7 0 0 0 14 0M12 18v3"/>');
  const SPEAKER_ICON = icon('<path d="M4 9v6h4l5 4V5L8 9z"/><path d="M16 9a4 4 0 0 1 0 6M19 6a8 8 0 0 1 0 12"/>');

  // One polite live region for what the microphone is doing and for errors.
  const status = document.createElement("div");
  status.id = "voice-status";
  status.setAttribute("role", "status");
  status.setAttribute("aria-live", "polite");
  const say = (message, error = false) => {
    status.textContent = message || "";
    status.classList.toggle("voice-error", error);
  };
  const errorOf = async (response) => {
    const body = await response.json().catch(() => ({}));
    return body?.error?.message || `${text.failed} (HTTP ${response.status})`;
  };

  // -- settings, kept in this browser ---------------------------------------------------------
  const prefs = {
    sendNow: localStorage.getItem("chat-voice-send-now") === "1",
    readAll: localStorage.getItem("chat-voice-read-all") === "1",
  };
  const checkbox = (id, key, label) => {
    const wrap = document.createElement("label");
    wrap.className = "voice-setting";
    const input = document.createElement("input");
    input.type = "checkbox";
    input.id = id;
    input.checked = prefs[key];
    input.addEventListener("change", () => {
      prefs[key] = input.checked;
      localStorage.setItem(id.replace("voice-", "chat-voice-"), input.checked ? "1" : "0");
    });
    wrap.append(input, document.createTextNode(" " + label));
    return wrap;
  };
  const settings = () => {
    const column = document.querySelector("#settings [data-testid='accordion-content'] > .column");
    if (!column || column.querySelector("#voice-settings")) return;
    const box = document.createElement("fieldset");
    box.id = "voice-settings";
    const legend = document.createElement("legend");
    legend.textContent = text.settings;
    box.append(legend);
    if (config.stt) box.append(checkbox("voice-send-now", "sendNow", text.send_now));
    if (config.tts !== "off") box.append(checkbox("voice-read-all", "readAll", text.read_all));
    column.append(box);
  };

  // -- the microphone ---------------------------------------------------------------------------
  let recorder = null;
  let stopTimer = null;
  const mic = document.createElement("button");
  mic.type = "button";
  mic.id = "voice-mic";
  mic.className = "voice-mic";
  mic.innerHTML = MIC_ICON;
  const micState = (recording, busy = false) => {
    mic.setAttribute("aria-pressed", recording ? "true" : "false");
    mic.setAttribute("aria-label", recording ? text.mic_stop : text.mic);
    mic.title = recording ? text.mic_stop : text.mic;
    mic.disabled = busy;
    mic.classList.toggle("recording", recording);
  };
  micState(false);

  const textarea = () => document.querySelector("#chat-input textarea");
  const putInBox = (words) => {
    const box = textarea();
    if (!box) return;
    const joined = box.value.trim() ? `${box.value.trimEnd()} ${words}` : words;
    // Set the value as typing would, so Gradio's own binding sees it.
    Object.getOwnPropertyDescriptor(HTMLTextAreaElement.prototype, "value").set.call(box, joined);
    box.dispatchEvent(new Event("input", { bubbles: true }));
    box.focus();
    if (prefs.sendNow) {
      requestAnimationFrame(() => document.querySelector("#chat-input button.submit-button")?.click());
    }
  };

  const transcribe = async (blob, type) => {
    micState(false, true);
    say(text.transcribing);
    const form = new FormData();
    const extension = type.includes("mp4") ? "m4a" : type.includes("ogg") ? "ogg" : "webm";
    form.append("file", blob, `recording.${extension}`);
    form.append("language", language);
    try {
      const response = await fetch(route("v1/audio/transcriptions"), {
        method: "POST", body: form, credentials: "same-origin",
      });
      if (!response.ok) {
        say(await errorOf(response), true);
        return;
      }
      const body = await response.json();
      say("");
      putInBox(body.text || "");
    } catch (error) {
      say(text.failed, true);
    } finally {
      micState(false);
    }
  };

  const startRecording = async () => {
    if (!navigator.mediaDevices?.getUserMedia || !window.MediaRecorder) {
      say(text.no_mic, true); // a microphone needs HTTPS (or localhost) and a recent browser
      return;
    }
    let stream;
    try {
      stream = await navigator.mediaDevices.getUserMedia({ audio: true });
    } catch (error) {
      say(error?.name === "NotAllowedError" ? text.mic_denied : text.no_mic, true);
      return;
    }
    const chunks = [];
    recorder = new MediaRecorder(stream);
    recorder.addEventListener("dataavailable", (event) => event.data.size && chunks.push(event.data));
    recorder.addEventListener("stop", () => {
      stream.getTracks().forEach((track) => track.stop());
      clearTimeout(stopTimer);
      const type = recorder.mimeType || "audio/webm";
      recorder = null;
      transcribe(new Blob(chunks, { type }), type);
    });
    recorder.start();
    micState(true);
    say(text.listening);
    stopTimer = setTimeout(() => recorder?.stop(), config.maxSeconds * 1000); // the server's limit
  };
  mic.addEventListener("click", () => (recorder ? recorder.stop() : startRecording()));
  document.addEventListener("keydown", (event) => {
    if (event.key === "Escape" && recorder) recorder.stop();
  });

  const placeMic = () => {
    const submit = document.querySelector("#chat-input button.submit-button, #chat-input button.stop-button");
    if (!config.stt || !submit || submit.parentElement.contains(mic)) return;
    submit.parentElement.insertBefore(mic, submit);
  };

  // -- reading replies --------------------------------------------------------------------------
  let playing = null; // {stop(), button}
  const stopReading = () => {
    if (!playing) return;
    playing.stop();
    playing.button?.setAttribute("aria-pressed", "false");
    playing = null;
  };
  // The browser's own voices (--tts browser): Chromium lists them after a while ("voiceschanged"),
  // and a browser with none (Chromium on Linux without speech-dispatcher) fails every utterance:
  // the page says so rather than stay silent.
  const synthesis = config.tts === "browser" ? window.speechSynthesis : undefined;
  synthesis?.getVoices(); // starts the list loading before the first reply
  const speakInBrowser = (words, button, done) => {
    if (!synthesis) {
      say(text.no_voice, true);
      done();
      return;
    }
    const utterance = new SpeechSynthesisUtterance(words);
    // the reply's script picks the language; the browser's own variant when it is that language
    const zh = /[\u3400-\u9fff]/.test(words);
    const own = language.toLowerCase().startsWith(zh ? "zh" : "en");
    utterance.lang = own ? language : zh ? "zh-CN" : "en-US";
    utterance.addEventListener("end", done);
    utterance.addEventListener("error", (event) => {
      // interrupted/canceled: Stop, or the next reading took over
      if (event.error === "interrupted" || event.error === "canceled") return;
      say(synthesis.getVoices().length ? text.failed : text.no_voice, true);
      done();
    });
    playing = { stop: () => synthesis.cancel(), button };
    synthesis.speak(utterance);
  };
  const read = async (words, button = null) => {
    stopReading();
    words = words.trim().slice(0, 4096);
    if (!words) return;
    button?.setAttribute("aria-pressed", "true");
    const done = () => { if (playing?.button === button) stopReading(); };
    if (config.tts === "browser") {
      speakInBrowser(words, button, done);
      return;
    }
    const controller = new AbortController();
    playing = { stop: () => controller.abort(), button };
    try {
      const response = await fetch(route("v1/audio/speech"), {
        method: "POST",
        credentials: "same-origin",
        headers: { "Content-Type": "application/json" },
        body: JSON.stringify({ input: words, response_format: "mp3" }),
        signal: controller.signal,
      });
      if (!response.ok) {
        say(await errorOf(response), true);
        done();
        return;
      }
      const url = URL.createObjectURL(await response.blob());
      const audio = new Audio(url);
      audio.addEventListener("ended", () => { URL.revokeObjectURL(url); done(); });
      if (playing?.button !== button) return; // another reading started meanwhile
      playing = { stop: () => { audio.pause(); URL.revokeObjectURL(url); }, button };
      // Stop pressed before the sound starts rejects play() with an AbortError: not a failure
      await audio.play().catch((error) => {
        if (error?.name === "AbortError") return;
        say(text.failed, true);
        done();
      });
    } catch (error) {
      if (error?.name !== "AbortError") say(text.failed, true);
    }
  };
  // What is read of a reply: its words as shown, without notices and thinking (titled bubbles),
  // code blocks, buttons or web addresses (as chat/voice/speakable.py does for Markdown).
  const SKIP = "pre, .code_wrap, button, svg, .thought-group, .katex-mathml, style, script";
  const BLOCK = /^(P|LI|H[1-6]|BR|DIV|TR|TD|TH|BLOCKQUOTE|UL|OL|TABLE)$/;
  const spokenText = (root) => {
    const parts = [];
    const walk = (node) => {
      if (node.nodeType === Node.TEXT_NODE) parts.push(node.nodeValue);
      if (node.nodeType !== Node.ELEMENT_NODE || node.matches(SKIP)) return;
      if (node.tagName === "A" && /^\s*https?:\/\//.test(node.textContent)) return;
      node.childNodes.forEach(walk);
      if (BLOCK.test(node.tagName)) parts.push("\n");
    };
    walk(root);
    return parts.join("").replace(/https?:\/\/\S+/g, " ").split("\n")
      .map((line) => line.replace(/\s+/g, " ").trim()).filter(Boolean).join("\n");
  };
  const replyText = (buttons) => {
    let row = buttons.previousElementSibling;
    while (row && !row.classList.contains("message-row")) row = row.previousElementSibling;
    return [...(row?.querySelectorAll("[data-testid='bot']") || [])].map(spokenText).filter(Boolean).join("\n");
  };
  const placeSpeakers = () => {
    if (config.tts === "off") return;
    for (const buttons of document.querySelectorAll("#chatbot .message-buttons-left .icon-button-wrapper")) {
      if (buttons.querySelector(".voice-read")) continue;
      const speaker = document.createElement("button");
      speaker.type = "button";
      speaker.className = "icon-button padded voice-read";
      speaker.innerHTML = SPEAKER_ICON;
      speaker.setAttribute("aria-label", text.read);
      speaker.setAttribute("aria-pressed", "false");
      speaker.title = text.read;
      speaker.addEventListener("click", () => {
        if (playing?.button === speaker) stopReading();
        else read(replyText(buttons.parentElement), speaker);
      });
      buttons.append(speaker);
    }
  };

  // Read every reply: when the stop button goes away, the newest reply is complete. Gradio adds
  // the button to the page while a reply runs; the observer below notes it however briefly it
  // stays (a cached or short reply can come and go between two looks). The reply is read once
  // its buttons follow the last user message (the button can go before the chatbot has drawn
  // the reply, and the buttons last on the page are then the previous reply's) and its words
  // are the same at two looks in a row (its Markdown may still be drawing).
  let generating = false;
  let waitingTicks = 0; // looks left for a finished reply's buttons to appear
  const stopShown = () => {
    const stop = document.querySelector("#chat-input button.stop-button");
    return !!stop && stop.offsetParent !== null;
  };
  const newestReply = () => {
    const replies = document.querySelectorAll("#chatbot .message-buttons-left");
    const users = document.querySelectorAll("#chatbot .message-row.user-row");
    const reply = replies[replies.length - 1];
    const user = users[users.length - 1];
    if (!reply || (user && !(user.compareDocumentPosition(reply) & Node.DOCUMENT_POSITION_FOLLOWING))) return null;
    return reply;
  };
  let drawn = null; // the finished reply's words at the previous look: read once they hold still
  const watchReplies = () => {
    const now = stopShown();
    if (generating && !now && prefs.readAll) {
      waitingTicks = 20; // 6 s: an error draws no reply
      drawn = null;
    }
    generating = now;
    if (now || !waitingTicks) return;
    waitingTicks -= 1;
    const reply = newestReply();
    const words = reply ? replyText(reply) : "";
    if (words && words === drawn) {
      waitingTicks = 0;
      read(words);
    }
    drawn = words;
  };

  document.body.append(status);
  const place = () => { settings(); placeMic(); placeSpeakers(); generating ||= stopShown(); };
  new MutationObserver(place).observe(document.body, { childList: true, subtree: true });
  place();
  setInterval(watchReplies, 300);
}
