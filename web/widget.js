/*
 * The clinic's chat widget: a chat window in the corner of any page, talking to the Rasa server's
 * socket.io channel.
 *
 *   <script src="https://chat.example.com/widget.js"></script>
 *   <script>ClinicChat.init({serverUrl: "https://rasa.example.com", phone: "(310) 828-7757"});</script>
 *
 * or, without an inline script (strict Content-Security-Policy):
 *
 *   <script src="https://chat.example.com/widget.js" data-server-url="https://rasa.example.com"
 *           data-phone="(310) 828-7757"></script>
 *
 * widget.css and socket.io-client (vendor/socket.io.min.js) are loaded from the folder widget.js
 * comes from. Every text is put in the page with textContent: nothing the visitor or the server sends
 * is parsed as HTML.
 *
 * The session id is the one the server confirms (`session_confirm`): the widget asks with the id it
 * has (or none) and adopts whatever the server answers, a signed id it issued or the one it echoed.
 * The id and the transcript are kept in sessionStorage (this tab only; gone when it is closed), so a
 * reload or another page of the site continues the conversation. What the visitor typed is never
 * stored (it may be a name, a phone number or an address); nor is an assistant message that holds an
 * address or a phone number other than the clinic's (the booking summary): after a reload these show
 * as "(not kept in this browser)". Quick-reply choices and the assistant's other messages are kept.
 *
 * `transports` (optional) is socket.io's list of transports: ["websocket"] when the Rasa server runs
 * several worker processes (`make run WORKERS=2`), since long-polling would spread one session's
 * requests over them; socket.io's default (long-polling, then an upgrade) otherwise.
 *
 * When no reply arrives within `replyTimeout` ms (10 s) of a message, the widget says so with the
 * clinic's phone and 911 (`technicalProblem`), and the conversation goes on.
 */
(function () {
  "use strict";

  var script = document.currentScript;
  var BASE = script && script.src ? script.src.replace(/[^/]*([?#].*)?$/, "") : "";
  // US numbers like (310) 828-7757, 310-828-7757 or 310.828.7757, and the emergency numbers.
  var PHONE = /\(\d{3}\)\s?\d{3}[-.\s]\d{4}|\b\d{3}[-.]\d{3}[-.]\d{4}\b|\b(?:911|988)\b/g;
  var MAX_STORED = 200;
  var EMAIL = /[^\s@]+@[^\s@]+/;
  var SESSION_ID = /^[A-Za-z0-9._:-]{16,200}$/;
  var NOT_KEPT = "(not kept in this browser)";
  var instances = 0;

  function make(tag, className, text) {
    var node = document.createElement(tag);
    if (className) node.className = className;
    if (text !== undefined && text !== null) node.textContent = String(text);
    return node;
  }

  function telHref(number) {
    var digits = number.replace(/\D/g, "");
    if (digits.length === 10) digits = "+1" + digits;
    else if (digits.length === 11 && digits.charAt(0) === "1") digits = "+" + digits;
    return "tel:" + digits;
  }

  // Appends `text` to `parent` as text nodes, with phone numbers as tel: links.
  function appendText(parent, text) {
    text = String(text);
    var last = 0;
    var match;
    PHONE.lastIndex = 0;
    while ((match = PHONE.exec(text)) !== null) {
      if (match.index > last) parent.appendChild(document.createTextNode(text.slice(last, match.index)));
      var link = make("a", "cc-tel", match[0]);
      link.href = telHref(match[0]);
      parent.appendChild(link);
      last = match.index + match[0].length;
    }
    if (last < text.length) parent.appendChild(document.createTextNode(text.slice(last)));
  }

  function digits(text) { return String(text || "").replace(/\D/g, ""); }

  // sessionStorage, or memory when the browser refuses it (blocked storage). What earlier versions kept
  // in localStorage (the transcript and the id, with no expiry) is removed.
  function makeStore(prefix) {
    var memory = {};
    var local = null;
    try {
      ["session", "transcript", "open"].forEach(function (key) { window.localStorage.removeItem(prefix + "." + key); });
    } catch (e) { /* no localStorage */ }
    try {
      local = window.sessionStorage;
      local.setItem(prefix + ".probe", "1");
      local.removeItem(prefix + ".probe");
    } catch (e) {
      local = null;
    }
    return {
      get: function (key) {
        try { return local ? local.getItem(prefix + "." + key) : (memory[key] || null); } catch (e) { return null; }
      },
      set: function (key, value) {
        try { if (local) local.setItem(prefix + "." + key, value); else memory[key] = value; } catch (e) { /* full */ }
      },
      remove: function (key) {
        try { if (local) local.removeItem(prefix + "." + key); else delete memory[key]; } catch (e) { /* ignore */ }
      }
    };
  }

  function loadScript(src) {
    return new Promise(function (resolve, reject) {
      var tag = document.createElement("script");
      tag.src = src;
      tag.async = true;
      tag.onload = resolve;
      tag.onerror = function () { reject(new Error("could not load " + src)); };
      document.head.appendChild(tag);
    });
  }

  function loadCss(href) {
    var links = document.querySelectorAll("link[rel=stylesheet]");
    for (var i = 0; i < links.length; i++) if (links[i].href === href) return;
    var link = document.createElement("link");
    link.rel = "stylesheet";
    link.href = href;
    document.head.appendChild(link);
  }

  function Chat(options) {
    if (!options || !options.serverUrl) throw new Error("ClinicChat.init: serverUrl is required");
    this.options = options;
    this.phone = options.phone || "";
    this.replyTimeout = options.replyTimeout || 10000;
    this.technicalProblem = options.technicalProblem || (this.phone
      ? "I'm having a technical problem right now, sorry. Please call " + this.phone +
        ", or try again in a minute. In an emergency, call 911."
      : "I'm having a technical problem right now, sorry. Please try again in a minute. In an emergency, call 911.");
    // numbers a stored assistant message may show: the clinic's, 911 and 988
    this.publicNumbers = [digits(this.phone).slice(-10), "911", "988"].filter(Boolean);
    this.store = makeStore(options.storageKey || "clinicChat");
    this.sessionId = this.store.get("session");
    if (!SESSION_ID.test(this.sessionId || "")) this.sessionId = null;  // the server issues one
    try { this.transcript = JSON.parse(this.store.get("transcript") || "[]"); } catch (e) { this.transcript = []; }
    if (!Array.isArray(this.transcript)) this.transcript = [];
    this.socket = null;
    this.online = false;
    this.confirmed = false;
    this.id = "clinic-chat-" + (++instances);
    if (options.css !== false) loadCss(options.cssUrl || BASE + "widget.css");
    this.build();
    this.render();
    if (this.store.get("open") === "1") this.open(false);
  }

  Chat.prototype.build = function () {
    var self = this;
    var o = this.options;
    var title = o.title || "Ask our assistant";
    var root = make("div", "cc-root");
    root.setAttribute("data-clinic-chat", "");

    var launcher = make("button", "cc-launcher", o.launcherText || "Chat with us");
    launcher.type = "button";
    launcher.setAttribute("aria-expanded", "false");
    launcher.setAttribute("aria-controls", this.id + "-panel");

    var panel = make("section", "cc-panel");
    panel.id = this.id + "-panel";
    panel.hidden = true;
    panel.setAttribute("aria-labelledby", this.id + "-title");

    var header = make("div", "cc-header");
    var heading = make("h2", "cc-title", title);
    heading.id = this.id + "-title";
    var restart = make("button", "cc-restart", "New chat");
    restart.type = "button";
    restart.title = "Clear this conversation from this browser and start a new one";
    var close = make("button", "cc-close", "\u00d7");
    close.type = "button";
    close.setAttribute("aria-label", "Close chat");
    header.appendChild(heading);
    header.appendChild(restart);
    header.appendChild(close);

    var status = make("div", "cc-status");
    status.setAttribute("role", "status");
    status.setAttribute("aria-live", "polite");

    var log = make("ol", "cc-log");
    log.setAttribute("role", "log");
    log.setAttribute("aria-live", "polite");
    log.setAttribute("aria-label", "Conversation");
    log.tabIndex = 0;  // scrollable with the keyboard

    var empty = make("p", "cc-empty", o.welcome ||
      "Ask a question about fibromyalgia and back-pain treatments, or ask to book a consultation.");

    var typing = make("div", "cc-typing");
    typing.hidden = true;
    typing.appendChild(make("span", "cc-visually-hidden", "The assistant is typing"));
    for (var i = 0; i < 3; i++) typing.appendChild(make("span", "cc-dot")).setAttribute("aria-hidden", "true");

    var replies = make("div", "cc-replies");
    replies.setAttribute("role", "group");
    replies.setAttribute("aria-label", "Suggested replies");

    var form = make("form", "cc-form");
    form.setAttribute("novalidate", "");
    var label = make("label", "cc-visually-hidden", "Your message");
    label.htmlFor = this.id + "-input";
    var input = make("input", "cc-input");
    input.id = this.id + "-input";
    input.type = "text";
    input.autocomplete = "off";
    input.maxLength = 1000;
    input.placeholder = "Type your question\u2026";
    var send = make("button", "cc-send", "Send");
    send.type = "submit";
    form.appendChild(label);
    form.appendChild(input);
    form.appendChild(send);

    panel.appendChild(header);
    panel.appendChild(status);
    panel.appendChild(empty);
    panel.appendChild(log);
    panel.appendChild(typing);
    panel.appendChild(replies);
    panel.appendChild(form);
    root.appendChild(panel);
    root.appendChild(launcher);
    (o.container || document.body).appendChild(root);

    launcher.addEventListener("click", function () { if (panel.hidden) self.open(true); else self.close(); });
    close.addEventListener("click", function () { self.close(); });
    restart.addEventListener("click", function () { self.restart(); });
    panel.addEventListener("keydown", function (event) {
      if (event.key === "Escape") { event.preventDefault(); self.close(); }
    });
    form.addEventListener("submit", function (event) {
      event.preventDefault();
      var text = input.value.trim();
      if (!text) return;
      if (self.send(text, text, true)) input.value = "";
    });

    this.el = { root: root, launcher: launcher, panel: panel, status: status, log: log, empty: empty,
                typing: typing, replies: replies, input: input };
  };

  Chat.prototype.open = function (focus) {
    this.el.panel.hidden = false;
    this.el.launcher.setAttribute("aria-expanded", "true");
    this.el.root.classList.add("cc-open");
    this.store.set("open", "1");
    this.scroll();
    if (focus) this.el.input.focus();
    this.connect();
  };

  Chat.prototype.close = function () {
    this.el.panel.hidden = true;
    this.el.launcher.setAttribute("aria-expanded", "false");
    this.el.root.classList.remove("cc-open");
    this.store.set("open", "0");
    this.el.launcher.focus();
  };

  Chat.prototype.connect = function () {
    var self = this;
    if (this.socket || this.connecting) return;
    this.connecting = true;
    var ready = window.io ? Promise.resolve() : loadScript(this.options.socketIoUrl || BASE + "vendor/socket.io.min.js");
    ready.then(function () {
      var settings = {
        path: self.options.socketPath || "/socket.io/",
        reconnectionDelay: 1000,
        reconnectionDelayMax: 5000,
        timeout: 8000
      };
      if (self.options.transports) settings.transports = self.options.transports;
      var socket = window.io(self.options.serverUrl, settings);
      self.socket = socket;
      // Online once the server has confirmed the session id (messages before would go nowhere).
      socket.on("connect", function () {
        self.confirmed = false;
        socket.emit("session_request", { session_id: self.sessionId });
      });
      socket.on("session_confirm", function (confirmed) {
        var id = confirmed && typeof confirmed === "object" ? confirmed.session_id : confirmed;
        if (typeof id !== "string" || !SESSION_ID.test(id)) return;
        self.sessionId = id;
        self.store.set("session", id);
        self.confirmed = true;
        self.setOnline(true);
      });
      socket.on("connect_error", function () { self.setOnline(false); });
      socket.on("disconnect", function (reason) {
        self.setOnline(false);
        // A server shutting down says goodbye ("io server disconnect"), after which socket.io does
        // not reconnect by itself: try again until it is back (each failure shows the notice again).
        if (reason === "io server disconnect") {
          setTimeout(function () { if (!socket.connected) socket.connect(); }, 2000);
        }
      });
      socket.on("bot_uttered", function (message) { self.receive(message); });
    }).catch(function () {
      self.connecting = false;
      self.setOnline(false);
    });
  };

  Chat.prototype.setOnline = function (online) {
    var status = this.el.status;
    this.online = online;
    this.el.root.classList.toggle("cc-online", online);
    this.el.root.classList.toggle("cc-offline", !online);
    if (online) {
      status.textContent = "";
      return;
    }
    this.typing(false);
    status.textContent = "";
    status.appendChild(document.createTextNode("We can't reach the assistant right now."));
    if (this.phone) {
      status.appendChild(document.createTextNode(" Please call "));
      appendText(status, this.phone);
      status.appendChild(document.createTextNode("."));
    } else {
      status.appendChild(document.createTextNode(" Please try again later."));
    }
  };

  // Sends `payload` and shows `shown` as the visitor's message; false when offline (nothing sent).
  Chat.prototype.send = function (shown, payload, typed) {
    var self = this;
    if (!this.online || !this.socket || !this.confirmed) {
      if (this.el.root.classList.contains("cc-offline")) this.setOnline(false);  // re-announced
      else this.el.status.textContent = "Connecting to the assistant\u2026 please try again in a moment.";
      return false;
    }
    this.clearReplies();
    this.add({ from: "user", text: shown, typed: !!typed });
    this.socket.emit("user_uttered", { message: payload, session_id: this.sessionId });
    this.typing(true);
    // No reply in time: say so (with the phone and 911); a late reply is still shown when it comes.
    clearTimeout(this.replyTimer);
    this.replyTimer = setTimeout(function () { self.noReply(); }, this.replyTimeout);
    return true;
  };

  Chat.prototype.noReply = function () {
    this.typing(false);
    this.add({ from: "bot", text: this.technicalProblem, notice: true });
  };

  Chat.prototype.receive = function (message) {
    if (!message || typeof message !== "object") return;
    var replies = message.quick_replies || message.buttons || [];
    var clean = [];
    for (var i = 0; i < replies.length; i++) {
      var reply = replies[i];
      if (reply && reply.title && reply.payload) clean.push({ title: String(reply.title), payload: String(reply.payload) });
    }
    if (!message.text && !clean.length) return;
    clearTimeout(this.replyTimer);
    this.typing(false);
    this.add({ from: "bot", text: message.text ? String(message.text) : "", replies: clean });
  };

  Chat.prototype.add = function (entry) {
    this.transcript.push(entry);
    if (this.transcript.length > MAX_STORED) this.transcript = this.transcript.slice(-MAX_STORED);
    this.save();
    this.renderEntry(entry);
    this.renderReplies();
    this.scroll();
  };

  // Whether an entry may be written to storage: never what the visitor typed, nor an assistant message
  // with an address or a phone number other than the clinic's (the booking summary and confirmation).
  Chat.prototype.keepable = function (entry) {
    if (entry.from === "user") return !entry.typed;
    var text = String(entry.text || "");
    if (EMAIL.test(text)) return false;
    var numbers = text.match(/\+?\d[\d\s().\-\/]{5,}\d/g) || [];
    for (var i = 0; i < numbers.length; i++) {
      var number = digits(numbers[i]);
      if (number.length >= 7 && this.publicNumbers.indexOf(number.slice(-10)) < 0) return false;
    }
    return true;
  };

  Chat.prototype.save = function () {
    var self = this;
    var kept = this.transcript.map(function (entry) {
      if (entry.hidden || self.keepable(entry)) return entry;
      return { from: entry.from, text: NOT_KEPT, hidden: true };
    });
    this.store.set("transcript", JSON.stringify(kept));
  };

  Chat.prototype.render = function () {
    this.el.log.textContent = "";
    for (var i = 0; i < this.transcript.length; i++) this.renderEntry(this.transcript[i]);
    this.renderReplies();
  };

  Chat.prototype.renderEntry = function (entry) {
    if (!entry || !entry.text) return;
    var item = make("li", "cc-msg " + (entry.from === "user" ? "cc-user" : "cc-bot") +
                    (entry.hidden ? " cc-hidden" : "") + (entry.notice ? " cc-notice" : ""));
    item.appendChild(make("span", "cc-visually-hidden", entry.from === "user" ? "You: " : "Assistant: "));
    var bubble = make("span", "cc-bubble");
    appendText(bubble, entry.text);
    item.appendChild(bubble);
    this.el.log.appendChild(item);
    this.el.empty.hidden = true;
  };

  // The quick replies of the last message, if it is the assistant's.
  Chat.prototype.renderReplies = function () {
    var self = this;
    var box = this.el.replies;
    box.textContent = "";
    var last = this.transcript[this.transcript.length - 1];
    this.el.empty.hidden = this.transcript.length > 0;
    if (!last || last.from !== "bot" || !last.replies) return;
    last.replies.forEach(function (reply) {
      var button = make("button", "cc-reply", reply.title);
      button.type = "button";
      button.addEventListener("click", function () {
        if (self.send(reply.title, reply.payload, false)) self.el.input.focus();
      });
      box.appendChild(button);
    });
  };

  Chat.prototype.clearReplies = function () {
    var last = this.transcript[this.transcript.length - 1];
    if (last && last.replies) last.replies = [];
    this.el.replies.textContent = "";
  };

  Chat.prototype.typing = function (on) {
    var self = this;
    clearTimeout(this.typingTimer);
    this.el.typing.hidden = !on;
    if (on) this.typingTimer = setTimeout(function () { self.el.typing.hidden = true; }, 20000);
    this.scroll();
  };

  Chat.prototype.scroll = function () {
    var log = this.el.log;
    log.scrollTop = log.scrollHeight;
  };

  // Forgets the conversation in this browser and starts a new one with a new id.
  Chat.prototype.restart = function () {
    // The old session id is revoked: whoever read it from this tab's storage cannot use it any more.
    if (this.socket && this.socket.connected && this.sessionId) {
      this.socket.emit("session_end", { session_id: this.sessionId });
    }
    this.transcript = [];
    this.store.remove("transcript");
    this.sessionId = null;  // the server issues a new one
    this.store.remove("session");
    clearTimeout(this.replyTimer);
    this.render();
    this.typing(false);
    if (this.socket && this.socket.connected) {
      this.confirmed = false;
      this.socket.emit("session_request", { session_id: null });
    }
    this.el.input.focus();
  };

  function init(options) {
    return new Promise(function (resolve) {
      function start() { resolve(new Chat(options)); }
      if (document.body) start();
      else document.addEventListener("DOMContentLoaded", start);
    });
  }

  window.ClinicChat = { init: init };

  if (script && script.getAttribute("data-server-url")) {
    init({ serverUrl: script.getAttribute("data-server-url"), phone: script.getAttribute("data-phone") || "",
           technicalProblem: script.getAttribute("data-technical-problem") || "" });
  }
})();
