// The appnet webmail page. Plain JavaScript, no framework: it fills the
// server-rendered frame through the JSON API under /api/v1 and performs
// every action through it (state changes carry the session's CSRF token
// in X-CSRF-Token). Text from messages is only ever inserted as text;
// the one exception is a message's HTML, which the server has already
// reduced to a strict allowlist (and the page's Content-Security-Policy
// forbids scripts and remote images besides).
"use strict";

(() => {
  const $ = (id) => document.getElementById(id);
  const meta = (name) => document.querySelector(`meta[name="${name}"]`).content;
  const csrfToken = meta("csrf-token");
  const account = meta("account");
  const PAGE = 50;

  const state = {
    folder: "INBOX",
    offset: 0,
    total: 0,
    folders: [],
    message: null,
    search: null, // the search's fields, while a search is shown
    uids: [], // the messages of the list shown, in order
    listed: new Map(), // their list entries, by UID
    cursor: -1, // the list row j/k point at
    draftUid: null, // the saved draft being edited
  };

  class APIError extends Error {
    constructor(status, body) {
      super((body && body.error) || `request failed (${status})`);
      this.status = status;
      this.body = body || {};
    }
  }

  async function api(method, path, body) {
    const options = {
      method,
      credentials: "same-origin",
      headers: { Accept: "application/json" },
    };
    if (method !== "GET") options.headers["X-CSRF-Token"] = csrfToken;
    if (body instanceof FormData) {
      options.body = body;
    } else if (body !== undefined) {
      options.headers["Content-Type"] = "application/json";
      options.body = JSON.stringify(body);
    }
    const response = await fetch(`/api/v1/${path}`, options);
    if (response.status === 401) {
      location.assign("/login?next=/mail/");
      throw new APIError(401, { error: "logged out" });
    }
    let value = null;
    try {
      value = await response.json();
    } catch (e) {
      value = null;
    }
    if (!response.ok) throw new APIError(response.status, value);
    return value;
  }

  const query = (params) => new URLSearchParams(params).toString();

  function say(text, isError = false) {
    const status = $("status");
    status.textContent = text;
    status.className = isError ? "error" : "";
  }

  function failed(error) {
    let text = error.message;
    const refused = error.body && error.body.recipients;
    if (refused) {
      text += ": " + refused.map((r) => `${r.address} (${r.code} ${r.reply})`).join("; ");
    }
    say(text, true);
  }

  function el(tag, attributes = {}, ...children) {
    const node = document.createElement(tag);
    for (const [name, value] of Object.entries(attributes)) {
      if (value === false || value === null || value === undefined) continue;
      if (name === "text") node.textContent = value;
      else node.setAttribute(name, value === true ? "" : value);
    }
    for (const child of children) {
      node.append(child instanceof Node ? child : document.createTextNode(child));
    }
    return node;
  }

  const addressText = (list) =>
    (list || []).map((a) => (a.name ? `${a.name} <${a.address}>` : a.address)).join(", ");
  const shortAddress = (list) =>
    (list || []).map((a) => a.name || a.address).join(", ");

  // One date format for the list and the reader, in local time: today's
  // mail by its time alone, this year's without the year.
  const timeFormat = new Intl.DateTimeFormat(undefined, { hour: "numeric", minute: "2-digit" });
  const dayFormat = new Intl.DateTimeFormat(undefined, { day: "numeric", month: "short" });
  const yearFormat = new Intl.DateTimeFormat(undefined, { day: "numeric", month: "short", year: "numeric" });

  function dateText(seconds, withTime = true) {
    if (seconds === null || seconds === undefined) return "";
    const when = new Date(seconds * 1000);
    const now = new Date();
    const time = timeFormat.format(when);
    if (when.toDateString() === now.toDateString()) return time;
    const day = (when.getFullYear() === now.getFullYear() ? dayFormat : yearFormat).format(when);
    return withTime ? `${day}, ${time}` : day;
  }

  // The attachment marker: a paper clip drawn in SVG (no emoji font needed).
  const SVG = "http://www.w3.org/2000/svg";
  function clip() {
    const svg = document.createElementNS(SVG, "svg");
    svg.setAttribute("class", "clip");
    svg.setAttribute("viewBox", "0 0 16 16");
    svg.setAttribute("width", "14");
    svg.setAttribute("height", "14");
    svg.setAttribute("role", "img");
    svg.setAttribute("aria-label", "has attachments");
    const title = document.createElementNS(SVG, "title");
    title.textContent = "Has attachments";
    const path = document.createElementNS(SVG, "path");
    path.setAttribute("d", "M11 4.5v6a3 3 0 0 1-6 0v-7a2 2 0 0 1 4 0v6.5a1 1 0 0 1-2 0V5");
    path.setAttribute("fill", "none");
    path.setAttribute("stroke", "currentColor");
    path.setAttribute("stroke-width", "1.4");
    path.setAttribute("stroke-linecap", "round");
    svg.append(title, path);
    return svg;
  }

  function sizeText(bytes) {
    if (bytes < 1024) return `${bytes} B`;
    if (bytes < 1024 * 1024) return `${(bytes / 1024).toFixed(1)} KB`;
    return `${(bytes / 1024 / 1024).toFixed(1)} MB`;
  }

  // Every view change takes a ticket; a view whose data arrives after a
  // later change was asked for is not shown.
  let navigation = 0;
  const ticket = () => ++navigation;
  const current = (mine) => mine === navigation;

  function go(hash) {
    if (location.hash === hash) route();
    else location.replace(hash);
  }

  function show(id) {
    for (const section of document.querySelectorAll("main > section")) {
      section.hidden = section.id !== id;
    }
  }

  // Folders.

  async function loadFolders() {
    const data = await api("GET", "folders");
    state.folders = data.folders;
    const list = $("folders");
    list.replaceChildren(
      ...data.folders.map((f) => {
        const link = el("a", { href: "#" + query({ folder: f.name }) }, f.name);
        link.addEventListener("click", () => menu(false));
        if (f.unseen) link.append(" ", el("span", { class: "unseen-count", text: `(${f.unseen})` }));
        const item = el("li", { "data-folder": f.name }, link);
        if (f.name === state.folder) item.className = "current";
        return item;
      }),
    );
    for (const select of [$("move-selected"), $("move-message")]) {
      select.replaceChildren(
        el("option", { value: "", text: "…" }),
        ...data.folders.map((f) => el("option", { value: f.name, text: f.name })),
      );
    }
    folderButtons();
  }

  const hasTrash = () => state.folders.some((f) => f.role === "trash");
  const folderInfo = (name) => state.folders.find((f) => f.name === name);
  const folderPath = (name) => "folders/" + encodeURIComponent(name);

  // INBOX and the special-use folders are neither renamed nor deleted.
  function folderButtons() {
    const info = folderInfo(state.folder);
    const fixed = !info || info.special;
    $("rename-folder").disabled = fixed;
    $("delete-folder").disabled = fixed;
  }

  async function openFolder(name) {
    await loadFolders();
    go("#" + query({ folder: name }));
  }

  async function createFolder(event) {
    event.preventDefault();
    const form = $("folder-form");
    const name = form.elements["name"].value.trim();
    if (!name) return;
    const result = await api("POST", "folders", { name });
    form.reset();
    say(`Folder ${result.folder.name} created.`);
    await openFolder(result.folder.name);
  }

  async function renameFolder() {
    const old = state.folder;
    const name = prompt(`New name for the folder ${old} (/ makes a subfolder):`, old);
    if (!name || name.trim() === old) return;
    const result = await api("PATCH", folderPath(old), { name: name.trim() });
    say(`Folder ${old} renamed to ${result.folder.name}.`);
    await openFolder(result.folder.name);
  }

  async function deleteFolder() {
    const name = state.folder;
    const count = (folderInfo(name) || { messages: 0 }).messages;
    const fate = hasTrash() ? "moved to Trash" : "deleted for good";
    const question = count
      ? `Delete the folder ${name}? Its ${count} message(s) will be ${fate}.`
      : `Delete the folder ${name}?`;
    if (!confirm(question)) return;
    // Without force, a message that arrived meanwhile makes the server
    // refuse ("folder not empty") rather than go unasked.
    const result = await api("DELETE", folderPath(name) + (count ? "?force=1" : ""));
    const moved = result.movedToTrash ? ` ${result.movedToTrash} message(s) moved to Trash.` : "";
    say(`Folder ${name} deleted.${moved}`);
    state.folder = "INBOX";
    await openFolder("INBOX");
  }

  // The message list.

  // Conversations: the messages of one thread (joined by Message-ID,
  // References and In-Reply-To) grouped together, newest thread first.
  function threaded(messages) {
    const parent = new Map();
    const find = (id) => {
      while (parent.has(id) && parent.get(id) !== id) id = parent.get(id);
      return id;
    };
    const join = (a, b) => {
      for (const id of [a, b]) if (!parent.has(id)) parent.set(id, id);
      const ra = find(a), rb = find(b);
      if (ra !== rb) parent.set(rb, ra);
    };
    const keys = messages.map((m) => {
      const own = m.messageId || `uid:${m.uid}`;
      join(own, own);
      for (const ref of m.references || []) join(own, ref);
      return own;
    });
    const groups = new Map();
    messages.forEach((m, i) => {
      const root = find(keys[i]);
      if (!groups.has(root)) groups.set(root, []);
      groups.get(root).push(m);
    });
    return [...groups.values()];
  }

  const threadsOn = () => localStorage.getItem("appnet.threads") === "1";

  function messageRow(folder, m, thread) {
    const draft = folder === "Drafts" && m.flags.includes("\\Draft");
    const href = "#" + (draft ? query({ view: "compose", folder, draft: m.uid }) : query({ folder, uid: m.uid }));
    const who = folder === "Sent" || draft ? "To: " + shortAddress(m.to) : shortAddress(m.from);
    const subject = el("td", { class: "subject" }, el("a", { href }, m.subject || "(no subject)"));
    if (thread > 1) subject.prepend(el("span", { class: "thread-count", title: `${thread} messages in this conversation` }, String(thread)));
    if (m.attachments) subject.append(" ", clip());
    const row = el(
      "tr",
      { "data-uid": String(m.uid), "data-href": href },
      el("td", { class: "check" }, el("input", { type: "checkbox", class: "select", value: String(m.uid), "aria-label": "Select" })),
      el("td", { class: "from" }, who),
      subject,
      el("td", { class: "date" }, dateText(m.date || m.internalDate)),
      el("td", { class: "size" }, sizeText(m.size)),
    );
    if (!m.flags.includes("\\Seen")) row.classList.add("unseen");
    if (m.flags.includes("\\Flagged")) row.classList.add("flagged");
    return row;
  }

  function renderList(data) {
    state.folder = data.folder;
    state.offset = data.offset;
    state.total = data.total;
    folderButtons();
    let rows;
    if (threadsOn()) {
      rows = threaded(data.messages).flatMap((group) =>
        group.map((m, i) => {
          const row = messageRow(data.folder, m, i === 0 ? group.length : 0);
          if (i > 0) row.classList.add("in-thread");
          return row;
        }),
      );
    } else {
      rows = data.messages.map((m) => messageRow(data.folder, m, 0));
    }
    state.uids = rows.map((row) => Number(row.dataset.uid));
    state.listed = new Map(data.messages.map((m) => [m.uid, m]));
    state.cursor = -1;
    $("messages").tBodies[0].replaceChildren(...rows);
    $("select-all").checked = false;
    $("threads").checked = threadsOn();
    const last = Math.min(data.offset + data.messages.length, data.total);
    const none = state.search ? "No messages match" : "No messages";
    $("range").textContent = data.total ? `${data.offset + 1}–${last} of ${data.total}` : none;
    $("newer").disabled = data.offset === 0;
    $("older").disabled = last >= data.total;
    show("list-view");
  }

  async function showList(folder, offset) {
    const mine = ticket();
    const data = await api("GET", "messages?" + query({ folder, offset, limit: PAGE }));
    if (!current(mine)) return;
    state.search = null;
    $("search-note").hidden = true;
    $("list-title").textContent = data.folder;
    document.title = `${data.folder} - Mail`;
    renderList(data);
  }

  const SEARCH_FIELDS = ["q", "from", "to", "subject", "body", "since", "until"];

  function searchWords(fields) {
    const names = { q: "", from: "from ", to: "to ", subject: "subject ", body: "text ", since: "since ", until: "until " };
    return Object.entries(fields).map(([k, v]) => `${names[k]}“${v}”`).join(", ");
  }

  async function showSearch(folder, fields, offset) {
    const mine = ticket();
    const data = await api("GET", "search?" + query({ folder, ...fields, offset, limit: PAGE }));
    if (!current(mine)) return;
    state.search = fields;
    $("list-title").textContent = `Search in ${data.folder}`;
    $("search-note").querySelector("span").textContent = `Messages matching ${searchWords(fields)}. `;
    $("search-note").hidden = false;
    document.title = `Search in ${data.folder} - Mail`;
    renderList(data);
  }

  function search(event) {
    event.preventDefault();
    const form = $("search-form");
    const fields = {};
    for (const name of SEARCH_FIELDS) {
      const value = form.elements[name].value.trim();
      if (value) fields[name] = value;
    }
    if (!Object.keys(fields).length) return;
    go("#" + query({ folder: state.folder, ...fields }));
  }

  function clearSearch() {
    $("search-form").reset();
    go("#" + query({ folder: state.folder }));
  }

  // The list's own hash: its folder, page and search.
  const pageHash = (offset) =>
    "#" + query({ folder: state.folder, ...(state.search || {}), ...(offset ? { offset } : {}) });

  const selectedUids = () =>
    [...document.querySelectorAll("#messages input.select:checked")].map((box) => Number(box.value));

  // Reading.

  function linkified(text) {
    const fragment = document.createDocumentFragment();
    const pattern = /\bhttps?:\/\/[^\s<>"']+[^\s<>"'.,;:!?)\]]/g;
    let last = 0;
    for (const match of text.matchAll(pattern)) {
      fragment.append(text.slice(last, match.index));
      fragment.append(el("a", { href: match[0], rel: "noopener noreferrer nofollow", target: "_blank" }, match[0]));
      last = match.index + match[0].length;
    }
    fragment.append(text.slice(last));
    return fragment;
  }

  async function showMessage(folder, uid, images = false) {
    const mine = ticket();
    const m = await api("GET", "message?" + query({ folder, uid, images: images ? 1 : 0 }));
    if (!current(mine)) return;
    state.message = m;
    state.folder = m.folder;
    $("message-subject").textContent = m.subject || "(no subject)";
    document.title = `${m.subject || "(no subject)"} - Mail`;
    const headers = [
      ["From", addressText(m.from)],
      ["To", addressText(m.to)],
      ["Cc", addressText(m.cc)],
      ["Date", dateText(m.date || m.internalDate)],
    ].filter(([, value]) => value);
    $("message-headers").replaceChildren(
      ...headers.flatMap(([name, value]) => [el("dt", {}, name), el("dd", {}, value)]),
    );
    const attachments = m.attachments.filter((a) => !a.inline || !images);
    $("attachments").replaceChildren(
      ...attachments.map((a) =>
        el("li", {}, el("a", { href: a.url, download: a.filename }, a.filename), ` (${a.contentType}, ${sizeText(a.size)})`),
      ),
    );
    const notes = [];
    if (m.blockedImages.remote) notes.push(`${m.blockedImages.remote} remote image(s) were removed.`);
    if (m.blockedImages.inline) notes.push(`${m.blockedImages.inline} image(s) in this message are hidden.`);
    $("images-note").hidden = notes.length === 0;
    $("images-note").querySelector("span").textContent = notes.join(" ") + " ";
    $("show-images").hidden = !m.blockedImages.inline;
    const body = $("message-body");
    if (m.html) {
      // Sanitised by the server (appnet.webmail.sanitize); see above.
      body.className = "html";
      body.innerHTML = m.html;
    } else if (m.text !== null) {
      body.className = "text";
      body.replaceChildren(el("pre", {}, linkified(m.text)));
    } else if (m.problem) {
      body.className = "text";
      body.replaceChildren(el("p", { class: "error" }, m.problem[0].toUpperCase() + m.problem.slice(1) + "."));
    } else {
      body.className = "text";
      body.replaceChildren();
    }
    $("raw-link").href = m.raw;
    $("thread").hidden = true;
    show("message-view");
    if (threadsOn()) showThread(m).catch(() => null);
    if (!m.flags.includes("\\Seen")) {
      await api("POST", "flags", { folder: m.folder, uids: [m.uid], add: ["\\Seen"] });
      await loadFolders();
    }
  }

  // The conversation of the message shown, oldest first (when asked).
  async function showThread(m) {
    const listed = state.listed.get(m.uid);
    const root = ((listed && listed.references) || [])[0] || m.messageId;
    if (!root) return;
    const mine = navigation;
    const data = await api("GET", "search?" + query({ folder: m.folder, thread: root, limit: 200 }));
    if (!current(mine) || data.total < 2) return;
    const items = [...data.messages].reverse().map((t) => {
      const text = `${shortAddress(t.from) || "?"}: ${t.subject || "(no subject)"}, ${dateText(t.date || t.internalDate)}`;
      if (t.uid === m.uid) return el("li", { class: "current" }, text);
      return el("li", {}, el("a", { href: "#" + query({ folder: m.folder, uid: t.uid }) }, text));
    });
    $("thread-list").replaceChildren(...items);
    $("thread").hidden = false;
  }

  // Composing.

  function compose(draft = {}) {
    ticket();
    const form = $("compose-form");
    form.reset();
    state.draftUid = draft.draft ? draft.draft.uid : null;
    const join = (value) => (Array.isArray(value) ? value.join(", ") : value || "");
    form.elements["to"].value = join(draft.to);
    form.elements["cc"].value = join(draft.cc);
    form.elements["bcc"].value = join(draft.bcc);
    form.elements["subject"].value = draft.subject || "";
    form.elements["text"].value = draft.text || "";
    for (const kind of ["reply", "forward"]) {
      const ref = draft[kind];
      form.elements[`${kind}.folder`].value = ref ? ref.folder : "";
      form.elements[`${kind}.uid`].value = ref ? String(ref.uid) : "";
    }
    $("forward-note").hidden = !draft.forward;
    document.title = "Compose - Mail";
    show("compose-view");
    const text = form.elements["text"];
    if (draft.draft) {
      // A saved draft goes on where it stopped.
      text.focus();
      text.setSelectionRange(text.value.length, text.value.length);
    } else if (draft.to && draft.to.length) {
      text.focus();
      text.setSelectionRange(0, 0);
    } else {
      form.elements["to"].focus();
    }
  }

  async function openDraft(mode) {
    const m = state.message;
    if (!m) return;
    compose(await api("GET", "draft?" + query({ mode, folder: m.folder, uid: m.uid })));
    // Back (or Discard) returns to the message.
    history.pushState(null, "", "#view=compose");
  }

  async function openSavedDraft(folder, uid) {
    const mine = ticket();
    const draft = await api("GET", "draft?" + query({ mode: "edit", folder, uid }));
    if (!current(mine)) return;
    compose(draft);
  }

  async function saveDraft() {
    const form = $("compose-form");
    const button = $("save-draft");
    button.disabled = true;
    say("Saving the draft…");
    try {
      const replaces = state.draftUid ? "?" + query({ replaces: state.draftUid }) : "";
      const result = await api("POST", "drafts" + replaces, new FormData(form));
      state.draftUid = result.uid;
      await loadFolders();
      say("Draft saved in Drafts.");
    } catch (error) {
      failed(error);
    } finally {
      button.disabled = false;
    }
  }

  async function send(event) {
    event.preventDefault();
    const form = $("compose-form");
    const button = $("send");
    button.disabled = true;
    say("Sending…");
    try {
      const result = await api("POST", "send", new FormData(form));
      const where = [];
      if (result.delivered.length) where.push(`delivered to ${result.delivered.join(", ")}`);
      if (result.queued.length) where.push(`queued for ${result.queued.join(", ")}`);
      form.reset();
      if (state.draftUid) {
        // Sent: the saved draft has done its work.
        await api("DELETE", "drafts?" + query({ uid: state.draftUid })).catch(() => null);
        state.draftUid = null;
      }
      await loadFolders();
      go("#" + query({ folder: state.folder === "Drafts" ? "INBOX" : state.folder }));
      say(`Message sent: ${where.join("; ")}.`);
    } catch (error) {
      failed(error);
    } finally {
      button.disabled = false;
    }
  }

  // Moving and deleting.

  const listHash = (folder) =>
    folder === state.folder ? pageHash(state.offset) : "#" + query({ folder });

  async function move(folder, uids, target) {
    if (!target || !uids.length) return;
    await api("POST", "move", { folder, uids, to: target });
    say(`Moved ${uids.length} message(s) to ${target}.`);
    await loadFolders();
    go(listHash(folder));
  }

  async function remove(folder, uids) {
    if (!uids.length) return;
    const permanent = !hasTrash() || folder === "Trash";
    if (permanent && !confirm(`Delete ${uids.length} message(s) for good?`)) return;
    const result = await api("POST", "delete", { folder, uids });
    say(result.action === "moved" ? `Moved ${uids.length} message(s) to ${result.to}.` : `Deleted ${result.uids.length} message(s).`);
    await loadFolders();
    go(listHash(folder));
  }

  // Administration.

  async function showQueue() {
    const mine = ticket();
    const data = await api("GET", "queue");
    if (!current(mine)) return;
    $("queue").tBodies[0].replaceChildren(
      ...data.messages.map((m) =>
        el(
          "tr",
          {},
          el("td", {}, String(m.id)),
          el("td", {}, m.sender || "<>"),
          el("td", {}, m.recipients.map((r) => `${r.address} (${r.state}${r.response ? ": " + r.response : ""})`).join(", ")),
          el("td", { class: "size" }, sizeText(m.size)),
          el("td", {}, dateText(m.created)),
          el("td", {}, m.held ? "held" : dateText(m.nextAttempt)),
          el("td", {}, m.lastError || ""),
        ),
      ),
    );
    document.title = "Queue - Mail";
    show("queue-view");
  }

  async function showUsers() {
    const mine = ticket();
    const data = await api("GET", "users");
    if (!current(mine)) return;
    $("users").tBodies[0].replaceChildren(
      ...data.users.map((u) => {
        const password = el("button", { type: "button", "data-action": "password", "data-address": u.address }, "Set password");
        const remove = el("button", { type: "button", "data-action": "delete", "data-address": u.address, disabled: u.address === account }, "Delete");
        return el(
          "tr",
          {},
          el("td", {}, u.address),
          el("td", {}, u.admin ? "yes" : ""),
          el("td", {}, u.quota === null ? "default" : sizeText(u.quota)),
          el("td", {}, dateText(u.created)),
          el("td", {}, password, " ", remove),
        );
      }),
    );
    document.title = "Users - Mail";
    show("users-view");
  }

  async function userAction(event) {
    const button = event.target.closest("button[data-action]");
    if (!button) return;
    const address = button.dataset.address;
    const path = "users/" + encodeURIComponent(address);
    if (button.dataset.action === "delete") {
      if (!confirm(`Delete the account ${address}? Its mail stays in the store.`)) return;
      await api("DELETE", path);
      say(`Deleted ${address}.`);
    } else {
      const password = prompt(`New password for ${address} (at least 8 characters):`);
      if (!password) return;
      await api("POST", path + "/password", { password });
      say(`Password of ${address} set; its sessions were ended.`);
    }
    await showUsers();
  }

  async function addUser(event) {
    event.preventDefault();
    const form = $("user-form");
    await api("POST", "users", {
      address: form.elements["address"].value,
      password: form.elements["password"].value,
      admin: form.elements["admin"].checked,
    });
    say(`Added ${form.elements["address"].value}.`);
    form.reset();
    await showUsers();
  }

  // The folder list on a narrow screen: shown when asked.
  function menu(open) {
    document.body.classList.toggle("nav-open", open);
    $("menu-button").setAttribute("aria-expanded", String(open));
  }

  // Keyboard shortcuts, ignored while typing in a field.
  const NOT_TYPED = new Set(["checkbox", "radio", "button", "submit", "reset", "file"]);
  function typing(target) {
    if (!(target instanceof Element)) return false;
    if (target.closest("textarea, select, [contenteditable]")) return true;
    return target instanceof HTMLInputElement && !NOT_TYPED.has(target.type);
  }

  function moveCursor(step) {
    const rows = [...$("messages").tBodies[0].rows];
    if (!rows.length) return;
    state.cursor = Math.max(0, Math.min(rows.length - 1, state.cursor + step));
    rows.forEach((row, i) => row.classList.toggle("cursor", i === state.cursor));
    rows[state.cursor].scrollIntoView({ block: "nearest" });
  }

  function neighbour(step) {
    const m = state.message;
    const at = state.uids.indexOf(m.uid);
    const uid = state.uids[at + step];
    if (at === -1 || uid === undefined) return;
    location.hash = "#" + query({ folder: m.folder, uid });
  }

  function shortcut(event) {
    if (event.ctrlKey || event.metaKey || event.altKey || typing(event.target)) return;
    const inList = !$("list-view").hidden;
    const reading = !$("message-view").hidden && state.message;
    switch (event.key) {
      case "j":
      case "k": {
        const step = event.key === "j" ? 1 : -1;
        if (inList) moveCursor(step);
        else if (reading) neighbour(step);
        else return;
        break;
      }
      case "Enter":
      case "o": {
        if (event.key === "Enter" && event.target !== document.body) return;
        const row = inList && $("messages").tBodies[0].rows[state.cursor];
        if (!row) return;
        location.hash = row.dataset.href;
        break;
      }
      case "r":
        if (!reading) return;
        openDraft("reply").catch(failed);
        break;
      case "c":
        $("compose-button").click();
        break;
      case "/":
        $("search-q").focus();
        break;
      default:
        return;
    }
    event.preventDefault();
  }

  // Navigation: the URL fragment names the view.

  async function route() {
    const params = new URLSearchParams(location.hash.slice(1));
    const view = params.get("view");
    const folder = params.get("folder") || state.folder || "INBOX";
    try {
      if (view === "compose") {
        if (params.get("draft")) await openSavedDraft(folder, Number(params.get("draft")));
        else if ($("compose-view").hidden) compose();
      } else if (view === "queue") {
        await showQueue();
      } else if (view === "users") {
        await showUsers();
      } else if (params.get("uid")) {
        await showMessage(folder, Number(params.get("uid")));
      } else {
        const offset = Number(params.get("offset") || 0);
        const fields = {};
        for (const name of SEARCH_FIELDS) if (params.get(name)) fields[name] = params.get(name);
        if (Object.keys(fields).length) await showSearch(folder, fields, offset);
        else await showList(folder, offset);
        for (const item of $("folders").children) {
          item.className = item.dataset.folder === state.folder ? "current" : "";
        }
      }
    } catch (error) {
      failed(error);
    }
  }

  const guarded = (action) => (event) => action(event).catch(failed);

  function wire() {
    window.addEventListener("hashchange", route);
    $("compose-button").addEventListener("click", () => {
      compose();
      if (location.hash !== "#view=compose") history.pushState(null, "", "#view=compose");
    });
    $("compose-form").addEventListener("submit", send);
    $("discard").addEventListener("click", () => {
      $("compose-form").reset();
      history.back();
    });
    $("reply").addEventListener("click", guarded(() => openDraft("reply")));
    $("reply-all").addEventListener("click", guarded(() => openDraft("all")));
    $("forward").addEventListener("click", guarded(() => openDraft("forward")));
    $("show-images").addEventListener("click", guarded(() => showMessage(state.message.folder, state.message.uid, true)));
    $("mark-unread").addEventListener("click", guarded(async () => {
      const m = state.message;
      await api("POST", "flags", { folder: m.folder, uids: [m.uid], remove: ["\\Seen"] });
      await loadFolders();
      go(listHash(m.folder));
    }));
    $("move-message").addEventListener("change", guarded(async (event) => {
      const m = state.message;
      await move(m.folder, [m.uid], event.target.value);
    }));
    $("delete-message").addEventListener("click", guarded(() => remove(state.message.folder, [state.message.uid])));
    $("move-selected").addEventListener("change", guarded(async (event) => {
      await move(state.folder, selectedUids(), event.target.value);
      event.target.value = "";
    }));
    $("delete-selected").addEventListener("click", guarded(() => remove(state.folder, selectedUids())));
    $("select-all").addEventListener("change", (event) => {
      for (const box of document.querySelectorAll("#messages input.select")) box.checked = event.target.checked;
    });
    $("newer").addEventListener("click", () => {
      location.hash = pageHash(Math.max(0, state.offset - PAGE));
    });
    $("older").addEventListener("click", () => {
      location.hash = pageHash(state.offset + PAGE);
    });
    $("threads").addEventListener("change", (event) => {
      localStorage.setItem("appnet.threads", event.target.checked ? "1" : "0");
      route();
    });
    $("search-form").addEventListener("submit", search);
    $("search-more-button").addEventListener("click", () => {
      const more = $("search-more");
      more.hidden = !more.hidden;
      $("search-more-button").setAttribute("aria-expanded", String(!more.hidden));
    });
    $("clear-search").addEventListener("click", clearSearch);
    $("save-draft").addEventListener("click", saveDraft);
    $("menu-button").addEventListener("click", () => menu(!document.body.classList.contains("nav-open")));
    document.addEventListener("keydown", shortcut);
    $("users").addEventListener("click", guarded(userAction));
    $("user-form").addEventListener("submit", guarded(addUser));
    $("folder-form").addEventListener("submit", guarded(createFolder));
    $("rename-folder").addEventListener("click", guarded(renameFolder));
    $("delete-folder").addEventListener("click", guarded(deleteFolder));
  }

  async function start() {
    wire();
    try {
      await loadFolders();
    } catch (error) {
      failed(error);
    }
    await route();
  }

  if (document.readyState === "loading") document.addEventListener("DOMContentLoaded", start);
  else start();
})();
