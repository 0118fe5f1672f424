// socketeer's chat page: one WebSocket member, speaking the same lines as nc.
// Every text from the chat is put in the page as text (textContent), never as HTML.
"use strict";
(function () {
  const MAX_LINE = Number(document.body.dataset.maxLine) || 4096;
  const BACKOFF_FIRST = 500, BACKOFF_MAX = 15000;
  const $ = (id) => document.getElementById(id);
  const status = $("status"), nickForm = $("nick-form"), nickInput = $("nick");
  const nickError = $("nick-error"), chat = $("chat"), log = $("log");
  const roomsList = $("rooms"), membersList = $("members"), roomTitle = $("room-title");
  const sayForm = $("say-form"), say = $("say"), sayError = $("say-error");
  const roomForm = $("room-form"), roomInput = $("room");
  const encoder = new TextEncoder();

  let socket = null;
  let backoff = BACKOFF_FIRST;
  let nick = localStorage.getItem("socketeer.nick") || "";
  let named = false; // the chat knows us by `nick` on this connection
  let wanted = false; // the user asked to join: name ourselves on every (re)connection
  let room = "";
  let rejoin = ""; // the room to go back to after a reconnection
  let members = [];
  const seen = new Set(); // said/action lines shown already (history comes again on rejoin)

  nickInput.value = nick;
  say.value = sessionStorage.getItem("socketeer.draft") || "";
  say.addEventListener("input", () => sessionStorage.setItem("socketeer.draft", say.value));

  // --- the connection --------------------------------------------------------------

  function connect() {
    const scheme = location.protocol === "https:" ? "wss:" : "ws:";
    setStatus("connecting…", false);
    socket = new WebSocket(`${scheme}//${location.host}/ws`);
    let first = true;
    socket.onopen = () => {
      socket.send("/format json");
      if (wanted && nick) socket.send(nick);
    };
    socket.onmessage = (message) => {
      const text = String(message.data);
      if (first) { first = false; if (!text.startsWith("{")) return; } // the nc greeting
      if (text.startsWith("{")) {
        try { handle(JSON.parse(text)); return; } catch (error) { /* shown as it came */ }
      }
      line("system", text);
    };
    socket.onclose = (event) => {
      socket = null;
      named = false;
      if (event.code === 1000 && !wanted) { setStatus("disconnected", true); return; }
      const wait = Math.round(backoff * (0.75 + Math.random() / 2));
      backoff = Math.min(backoff * 2, BACKOFF_MAX);
      setStatus(`disconnected (${event.code || "no answer"}); reconnecting in ${(wait / 1000).toFixed(1)} s`, true);
      setTimeout(connect, wait);
    };
  }

  function send(text) {
    if (!socket || socket.readyState !== WebSocket.OPEN) return false;
    socket.send(text);
    return true;
  }

  function setStatus(text, offline) {
    status.textContent = text;
    status.classList.toggle("offline", offline);
  }

  // --- what the chat says ------------------------------------------------------------

  function handle(event) {
    switch (event.type) {
      case "said":
      case "action": {
        const key = `${event.time}|${event.room}|${event.nick}|${event.text}`;
        if (seen.has(key)) return;
        seen.add(key);
        message(event, event.type === "action" ? `* ${event.nick} ${event.text}` : event.text);
        return;
      }
      case "private":
        message({ ...event, nick: event.from }, event.text, "private");
        return;
      case "joined":
        if (event.room === room && !members.includes(event.nick)) setMembers([...members, event.nick]);
        line("system", `${event.nick} joined ${event.room}`, event.time);
        return;
      case "left":
        if (event.room === room) setMembers(members.filter((m) => m !== event.nick));
        line("system", `${event.nick} ${event.how === "left" ? `left ${event.room}` : event.how}${event.reason ? ` (${event.reason})` : ""}`, event.time);
        return;
      case "renamed":
        if (event.room === room) setMembers(members.map((m) => (m === event.old ? event.new : m)));
        line("system", `${event.old} is now known as ${event.new}`, event.time);
        return;
      case "notice":
        notice(event);
        return;
      case "error":
        problem(event);
        return;
    }
  }

  function notice(event) {
    switch (event.code) {
      case "format":
      case "welcome":
        return;
      case "nick": {
        const old = nick;
        nick = event.nick;
        localStorage.setItem("socketeer.nick", nick);
        const wasNamed = named;
        if (named && old !== nick) setMembers(members.map((m) => (m === old ? nick : m)));
        named = true;
        backoff = BACKOFF_FIRST;
        nickForm.hidden = true;
        chat.hidden = false;
        setStatus(`connected as ${nick}`, false);
        if (!wasNamed && room) rejoin = room; // reconnected: back to the room we were in
        say.focus();
        return;
      }
      case "joined":
        if (rejoin && rejoin !== event.room) send(`/join ${rejoin}`);
        rejoin = "";
        room = event.room;
        roomTitle.textContent = room;
        setMembers(event.nicks || []);
        send("/rooms");
        line("system", event.text, event.time);
        return;
      case "left":
        room = "";
        roomTitle.textContent = "(no room)";
        setMembers([]);
        line("system", event.text, event.time);
        return;
      case "rooms":
        setRooms(event.rooms || []);
        return;
      case "who":
        if (event.room === room) setMembers(event.nicks || []);
        line("system", event.text, event.time);
        return;
      default:
        line("system", event.text, event.time);
    }
  }

  function problem(event) {
    if (!named && event.code && event.code.startsWith("nick")) {
      nickError.textContent = event.text;
      nickForm.hidden = false;
      chat.hidden = true;
      wanted = false;
      nickInput.focus();
      return;
    }
    line("problem", event.text, event.time);
  }

  // --- the page ------------------------------------------------------------------------

  function hue(name) {
    let h = 0;
    for (const c of name) h = (h * 31 + c.codePointAt(0)) % 360;
    return h;
  }

  function paint(element, name) {
    element.style.color = `hsl(${hue(name)} 65% 45%)`; // CSSOM: allowed by the page's CSP
  }

  function clock(time) {
    const when = time ? new Date(time * 1000) : new Date();
    return when.toLocaleTimeString([], { hour: "2-digit", minute: "2-digit" });
  }

  function append(item) {
    const atEnd = log.scrollHeight - log.scrollTop - log.clientHeight < 40;
    log.append(item);
    while (log.childElementCount > 1000) log.firstElementChild.remove();
    if (atEnd) log.scrollTop = log.scrollHeight;
  }

  function stamp(item, time) {
    const when = document.createElement("time");
    when.className = "when";
    when.textContent = clock(time);
    item.append(when);
  }

  function message(event, text, kind) {
    const item = document.createElement("li");
    if (kind) item.className = kind;
    stamp(item, event.time);
    if (event.room && room && event.room !== room && kind !== "private") {
      const place = document.createElement("span");
      place.className = "place";
      place.textContent = event.room;
      item.append(place);
    }
    const who = document.createElement("span");
    who.className = "nick";
    who.textContent = event.nick;
    paint(who, event.nick);
    item.append(who);
    if (kind === "private") {
      const to = document.createElement("span");
      to.className = "place";
      to.textContent = `→ ${event.to} (private)`;
      item.append(to);
    }
    const body = document.createElement("span");
    body.className = "text";
    body.textContent = text;
    item.append(body);
    append(item);
  }

  function line(kind, text, time) {
    for (const part of String(text).split("\n")) {
      const item = document.createElement("li");
      stamp(item, time);
      const body = document.createElement("span");
      body.className = kind;
      body.textContent = part;
      item.append(body);
      append(item);
    }
  }

  function setMembers(list) {
    members = [...new Set(list)].sort((a, b) => a.localeCompare(b));
    membersList.replaceChildren(
      ...members.map((name) => {
        const item = document.createElement("li");
        const button = document.createElement("button");
        button.type = "button";
        button.textContent = name;
        button.title = `Send ${name} a private message`;
        paint(button, name);
        button.addEventListener("click", () => {
          say.value = `/msg ${name} `;
          say.focus();
        });
        item.append(button);
        return item;
      }),
    );
  }

  function setRooms(list) {
    roomsList.replaceChildren(
      ...list.map((entry) => {
        const item = document.createElement("li");
        if (entry.room === room) item.className = "current";
        const button = document.createElement("button");
        button.type = "button";
        button.textContent = `${entry.room} (${entry.count})`;
        button.addEventListener("click", () => send(`/join ${entry.room}`));
        item.append(button);
        return item;
      }),
    );
  }

  nickForm.addEventListener("submit", (event) => {
    event.preventDefault();
    nickError.textContent = "";
    nick = nickInput.value.trim();
    if (!nick) return;
    wanted = true;
    if (!send(nick)) setStatus("not connected yet; joining once connected", true);
  });

  sayForm.addEventListener("submit", (event) => {
    event.preventDefault();
    const text = say.value;
    if (!text.trim()) return;
    if (encoder.encode(text).length > MAX_LINE) {
      sayError.textContent = `That is longer than ${MAX_LINE} bytes; it was not sent.`;
      return;
    }
    if (!send(text)) {
      sayError.textContent = "Not connected: your message is kept until the chat is back.";
      return;
    }
    sayError.textContent = "";
    if (text.trim() === "/quit") wanted = false;
    say.value = "";
    sessionStorage.removeItem("socketeer.draft");
  });

  roomForm.addEventListener("submit", (event) => {
    event.preventDefault();
    const name = roomInput.value.trim();
    if (name && send(`/join ${name}`)) roomInput.value = "";
  });

  setInterval(() => { if (named) send("/rooms"); }, 30000);
  connect();
})();
