// The demo page: renders the simulated server from /api/state, sends commands and clicks, follows /api/events.
"use strict";

const view = { member: null, channel: null, state: null, commands: [], rendered: new Map(), commandKey: "" };
const $ = (selector) => document.querySelector(selector);

function el(tag, attributes = {}, ...children) {
  const node = document.createElement(tag);
  for (const [key, value] of Object.entries(attributes)) {
    if (value === undefined || value === null || value === false) continue;
    if (key === "class") node.className = value;
    else if (key === "text") node.textContent = value;
    else if (key.startsWith("on")) node.addEventListener(key.slice(2), value);
    else node.setAttribute(key, value === true ? "" : value);
  }
  for (const child of children.flat()) if (child) node.append(child);
  return node;
}

function escapeHtml(text) {
  return String(text).replace(/[&<>"']/g, (c) => ({ "&": "&amp;", "<": "&lt;", ">": "&gt;", '"': "&quot;", "'": "&#39;" })[c]);
}

// The little of Discord's markdown the bot uses: bold, italics, code, links.
function markdown(text) {
  return escapeHtml(text || "")
    .replace(/\*\*(.+?)\*\*/g, "<b>$1</b>")
    .replace(/(^|[^*])\*([^*\n]+)\*/g, "$1<i>$2</i>")
    .replace(/`([^`]+)`/g, "<code>$1</code>")
    .replace(/\[([^\]]+)\]\((\S+?)\)/g, '<a href="$2" target="_blank" rel="noopener">$1</a>')
    .replace(/&lt;t:(\d+)(?::[a-zA-Z])?&gt;/g, (_, seconds) => relativeTime(Number(seconds)));
}

// Discord's <t:unix:R> timestamps, as "12 s ago" or "in 3 min".
function relativeTime(seconds) {
  const delta = Math.round(seconds - Date.now() / 1000);
  const size = Math.abs(delta);
  const text = size < 90 ? `${size} s` : size < 5400 ? `${Math.round(size / 60)} min` : `${Math.round(size / 3600)} h`;
  return delta < 0 ? `${text} ago` : `in ${text}`;
}

function videoLinks(text) {
  return [...String(text || "").matchAll(/(\/proxy\/[^\s)>"]+\.mp4[^\s)>"]*)/g)].map((match) => match[1]);
}

async function api(path, options = {}) {
  const response = await fetch(path, options);
  const body = await response.json().catch(() => ({}));
  if (!response.ok) throw new Error(body.error || `${response.status} ${response.statusText}`);
  return body;
}

function postJson(path, body) {
  return api(path, { method: "POST", headers: { "Content-Type": "application/json" }, body: JSON.stringify(body) });
}

// ---------------------------------------------------------------- messages

function renderEmbed(embed) {
  const colour = typeof embed.color === "number" ? "#" + embed.color.toString(16).padStart(6, "0") : "#5865f2";
  const main = el("div", { class: "main" });
  if (embed.author && embed.author.name) main.append(el("div", { class: "context", text: embed.author.name }));
  if (embed.title) main.append(el("div", { class: "title", text: embed.title }));
  if (embed.description) main.append(el("div", { class: "content" }, htmlNode(markdown(embed.description))));
  if (embed.fields && embed.fields.length) {
    main.append(el("div", { class: "fields" }, embed.fields.map((field) =>
      el("div", { class: field.inline ? "field" : "field block" },
        el("div", { class: "name" }, htmlNode(markdown(field.name))),
        el("div", { class: "value" }, htmlNode(markdown(field.value)))))));
  }
  const box = el("div", { class: "embed", style: `border-left-color: ${colour}` }, main);
  box.append(embed.thumbnail && embed.thumbnail.url ? el("img", { class: "thumb", src: embed.thumbnail.url, alt: "" }) : el("span"));
  if (embed.image && embed.image.url) box.append(el("img", { class: "image", src: embed.image.url, alt: "" }));
  if (embed.footer && embed.footer.text) box.append(el("div", { class: "footer", text: embed.footer.text }));
  return box;
}

function htmlNode(html) {
  const span = document.createElement("span");
  span.innerHTML = html;
  return span;
}

function renderComponents(message) {
  const rows = (message.components || []).map((row) => el("div", { class: "action-row" }, (row.components || []).map((item) => {
    if (item.type === 2 && item.url) return el("a", { class: "link", href: item.url, target: "_blank", text: item.label || item.url });
    if (item.type === 2) {
      return el("button", {
        type: "button", class: `style-${item.style || 2}`, disabled: !!item.disabled, "data-custom-id": item.custom_id,
        text: item.label || (item.emoji && item.emoji.name) || "?",
        onclick: () => clickComponent(message.id, item.custom_id, null),
      });
    }
    if (item.type === 3) {
      const select = el("select", { "data-custom-id": item.custom_id, disabled: !!item.disabled,
        onchange: (event) => clickComponent(message.id, item.custom_id, [event.target.value]) },
        el("option", { value: "", text: item.placeholder || "Choose…" }),
        (item.options || []).map((option) => el("option", { value: option.value, text: option.label })));
      return select;
    }
    return null;
  })));
  return rows.length ? el("div", { class: "components" }, rows) : null;
}

function renderMessage(message) {
  const who = el("div", { class: "who" }, message.author, message.bot ? el("span", { class: "tag", text: "APP" }) : null);
  const node = el("div", { class: message.ephemeral ? "message ephemeral" : "message", "data-message-id": message.id });
  if (message.command) node.append(el("div", { class: "context", text: `${message.invoker} used /${message.command}` }));
  node.append(who);
  if (message.loading) node.append(el("div", { class: "content", text: `${view.state.bot} is thinking…` }));
  if (message.content) node.append(el("div", { class: "content" }, htmlNode(markdown(message.content))));
  for (const embed of message.embeds) node.append(renderEmbed(embed));
  for (const attachment of message.attachments) {
    if (attachment.content_type.startsWith("video/")) {
      node.append(el("video", { controls: true, preload: "metadata", src: attachment.url, "data-filename": attachment.filename }));
    } else if (attachment.content_type.startsWith("image/")) {
      node.append(el("div", { class: "attachment" }, el("img", { src: attachment.url, alt: attachment.filename })));
    } else {
      node.append(el("a", { href: attachment.url, text: attachment.filename }));
    }
  }
  for (const link of videoLinks(message.content)) node.append(el("video", { controls: true, preload: "metadata", src: link }));
  const components = renderComponents(message);
  if (components) node.append(components);
  if (message.ephemeral) node.append(el("div", { class: "only-you", text: "Only you can see this" }));
  return node;
}

function renderMessages(channel) {
  const box = $("#messages");
  const atBottom = box.scrollHeight - box.scrollTop - box.clientHeight < 40;
  const keep = new Set();
  let previous = null;
  for (const message of channel.messages) {
    const key = JSON.stringify(message);
    keep.add(message.id);
    let entry = view.rendered.get(message.id);
    if (!entry || entry.key !== key) {
      const node = renderMessage(message);
      if (entry) entry.node.replaceWith(node);
      entry = { key, node };
      view.rendered.set(message.id, entry);
    }
    const expected = previous ? previous.nextSibling : box.firstChild;
    if (expected !== entry.node) box.insertBefore(entry.node, expected);
    previous = entry.node;
  }
  for (const [id, entry] of view.rendered) {
    if (!keep.has(id)) { entry.node.remove(); view.rendered.delete(id); }
  }
  if (atBottom) box.scrollTop = box.scrollHeight;
}

// ---------------------------------------------------------------- server, members, panel

function render() {
  const state = view.state;
  $("#guild-name").textContent = state.guild.name;
  if (!view.channel) view.channel = state.channels[0].id;
  const nav = $("#channels");
  nav.replaceChildren(...state.channels.map((channel) => el("a", {
    class: channel.id === view.channel ? "active" : "", "data-channel": channel.id, text: `# ${channel.name}`,
    onclick: () => { view.channel = channel.id; view.rendered.forEach((entry) => entry.node.remove()); view.rendered.clear(); render(); },
  })));
  const member = $("#member");
  if (member.options.length !== state.members.length) {
    member.replaceChildren(...state.members.map((item) =>
      el("option", { value: item.id, text: item.admin ? `${item.name} (owner, admin)` : item.name })));
  }
  member.value = view.member;
  const channel = state.channels.find((item) => item.id === view.channel);
  $("#channel-title").textContent = `# ${channel.name}`;
  renderMessages(channel);
  renderLedger(state.jobs);
  renderProviders(state.providers);
  $("#speed").value = state.speed;
}

function renderLedger(jobs) {
  const tab = $("#tab-ledger");
  if (!jobs.length) { tab.replaceChildren(el("p", { class: "hint", text: "No job yet. Run /animate below." })); return; }
  tab.replaceChildren(...jobs.map((job) => el("div", { class: "job", "data-job": job.id },
    el("div", {}, el("span", { class: "state", text: `#${job.id} ${job.state}` }),
      ` ${job.provider}${job.model ? " " + job.model : ""} for ${job.member}`),
    el("div", { text: `credits ${job.credits ?? "–"} (estimated ${job.estimated_credits ?? "–"}), task ${job.task_id ?? "–"}` +
      (job.progress != null ? `, ${Math.round(job.progress * 100)} %` : "") + (job.delivered ? ", delivered" : "") }),
    job.error ? el("div", { text: job.error }) : null,
    el("pre", { text: job.events.map((event) => `${event.at} ${event.from ?? "·"} → ${event.to}${event.detail ? "  " + event.detail : ""}`).join("\n") }))));
}

function renderProviders(providers) {
  $("#tab-providers").replaceChildren(...Object.entries(providers).map(([name, provider]) => el("div", {},
    el("h3", { text: `${name}: waits ${provider.queue_seconds} s, runs ${provider.run_seconds} s` +
      (provider.concurrency ? `, at most ${provider.concurrency} at once` : "") +
      (provider.next_outcomes.length ? `, next: ${provider.next_outcomes.join(", ")}` : "") }),
    provider.requests.length ? null : el("p", { class: "hint", text: "No request yet." }),
    provider.requests.slice().reverse().map((request) => el("div", { class: "request" },
      el("b", { text: `${request.method} ${request.path}` }),
      el("pre", { text: JSON.stringify({ headers: request.headers, body: request.body }, null, 1) }))))));
}

async function refresh() {
  view.state = await api(`/api/state?member=${encodeURIComponent(view.member || "")}`);
  if (!view.member) view.member = view.state.viewer;
  render();
  const commands = await api("/api/commands");
  const key = JSON.stringify(commands);
  if (key !== view.commandKey) { view.commandKey = key; view.commands = commands; renderCommandPicker(); }
}

// ---------------------------------------------------------------- composer, from the synced command tree

function commandEntries(commands) {
  const entries = [];
  for (const command of commands) {
    const options = command.options || [];
    const subs = options.filter((option) => option.type === 1 || option.type === 2);
    if (!subs.length) { entries.push({ label: command.name, name: command.name, sub: null, options, description: command.description }); continue; }
    for (const sub of subs) {
      if (sub.type === 1) entries.push({ label: `${command.name} ${sub.name}`, name: command.name, sub: sub.name, options: sub.options || [], description: sub.description });
      else for (const leaf of sub.options || []) entries.push({ label: `${command.name} ${sub.name} ${leaf.name}`, name: command.name, sub: `${sub.name} ${leaf.name}`, options: leaf.options || [], description: leaf.description });
    }
  }
  return entries;
}

function renderCommandPicker() {
  const picker = $("#command-picker");
  const before = picker.value;
  view.entries = commandEntries(view.commands);
  picker.replaceChildren(...view.entries.map((entry, index) => el("option", { value: entry.label, text: `${entry.label}: ${entry.description || ""}`, "data-index": index })));
  if (before && view.entries.some((entry) => entry.label === before)) picker.value = before;
  renderOptions();
}

function renderOptions() {
  const entry = view.entries.find((item) => item.label === $("#command-picker").value);
  const box = $("#options");
  if (!entry) { box.replaceChildren(); return; }
  box.replaceChildren(...entry.options.map((option) => {
    const name = `opt-${option.name}`;
    let input;
    if (option.type === 11) input = el("input", { type: "file", name, required: !!option.required });
    else if (option.choices && option.choices.length) {
      input = el("select", { name }, option.required ? null : el("option", { value: "", text: "(default)" }),
        option.choices.map((choice) => el("option", { value: String(choice.value), text: choice.name })));
    } else if (option.type === 5) {
      input = el("select", { name }, el("option", { value: "", text: "(default)" }), el("option", { value: "true", text: "true" }), el("option", { value: "false", text: "false" }));
    } else if (option.type === 4 || option.type === 10) {
      input = el("input", { type: "number", name, step: option.type === 4 ? "1" : "any", min: option.min_value, max: option.max_value, required: !!option.required });
    } else input = el("input", { type: "text", name, required: !!option.required, maxlength: option.max_length });
    return el("label", { title: option.description || "" }, el("span", { class: option.required ? "required" : "", text: option.name }), input);
  }));
}

async function sendCommand(event) {
  event.preventDefault();
  const entry = view.entries.find((item) => item.label === $("#command-picker").value);
  if (!entry) return;
  const form = new FormData();
  const options = {};
  for (const option of entry.options) {
    const input = $("#options").querySelector(`[name="opt-${option.name}"]`);
    if (!input) continue;
    if (option.type === 11) { if (input.files[0]) form.append(option.name, input.files[0], input.files[0].name); }
    else if (input.value !== "") options[option.name] = input.value;
  }
  form.append("command", JSON.stringify({ member: view.member, channel: view.channel, name: entry.name, subcommand: entry.sub, options }));
  $("#composer-error").textContent = "";
  try { await api("/api/command", { method: "POST", body: form }); }
  catch (error) { $("#composer-error").textContent = error.message; }
}

async function clickComponent(messageId, customId, values) {
  try { await postJson("/api/click", { member: view.member, message: messageId, custom_id: customId, values }); }
  catch (error) { $("#composer-error").textContent = error.message; }
}

async function knob(body) {
  $("#knob-answer").textContent = "";
  try {
    const answer = await postJson("/api/knobs", body);
    if ("killed" in answer) $("#knob-answer").textContent = answer.killed ? "Token killed." : "No command yet.";
  } catch (error) { $("#knob-answer").textContent = error.message; }
}

// ---------------------------------------------------------------- wiring

$("#composer").addEventListener("submit", sendCommand);
$("#command-picker").addEventListener("change", renderOptions);
$("#member").addEventListener("change", (event) => { view.member = event.target.value; refresh(); });
$("#speed").addEventListener("change", (event) => knob({ speed: event.target.value }));
$("#set-outcome").addEventListener("click", () => knob({ provider: $("#outcome-provider").value, outcome: $("#outcome").value }));
$("#set-limit").addEventListener("click", () => knob({ provider: $("#limit-provider").value, concurrency: Number($("#limit").value) }));
$("#kill-token").addEventListener("click", () => knob({ kill_token: true }));
for (const button of document.querySelectorAll(".tabs button")) {
  button.addEventListener("click", () => {
    for (const other of document.querySelectorAll(".tabs button")) other.classList.toggle("active", other === button);
    for (const tab of document.querySelectorAll(".tab")) tab.hidden = tab.id !== `tab-${button.dataset.tab}`;
  });
}

let pending = null;
function scheduleRefresh() {
  if (pending) return;
  pending = setTimeout(() => { pending = null; refresh().catch((error) => console.error(error)); }, 50);
}
new EventSource("/api/events").addEventListener("change", scheduleRefresh);
refresh();
