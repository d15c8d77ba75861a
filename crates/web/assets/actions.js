// Control actions: buttons and force forms post Buildbot's JSON-RPC calls with fetch, as JSON, with the
// session's CSRF token (from the page's meta tag, else from /api/v2/me); a refusal's text is shown next to the
// button or the field.

let csrf = null;

async function csrfToken() {
  const meta = document.querySelector('meta[name="kiln-csrf"]');
  if (meta) return meta.content;
  if (csrf === null) {
    try {
      const me = await (await fetch("/api/v2/me", { credentials: "same-origin" })).json();
      csrf = me.csrf || "";
    } catch (_) {
      csrf = "";
    }
  }
  return csrf;
}

async function headers() {
  const h = { "Content-Type": "application/json", Accept: "application/json" };
  const token = await csrfToken();
  if (token) h["X-Kiln-CSRF"] = token;
  return h;
}

async function call(url, method, params) {
  let response;
  try {
    response = await fetch(url, {
      method: "POST",
      headers: await headers(),
      credentials: "same-origin",
      body: JSON.stringify({ jsonrpc: "2.0", method, params, id: 1 }),
    });
  } catch (e) {
    return { error: `the master did not answer (${e.message})` };
  }
  let body = null;
  try { body = await response.json(); } catch (_) { /* not JSON */ }
  if (response.ok && body && !body.error) return { result: body.result };
  const message = body?.error?.message || body?.error || `${response.status} ${response.statusText}`;
  return { error: String(message) };
}

document.addEventListener("click", async (event) => {
  const button = event.target.closest("button.action");
  if (!button) return;
  const box = button.parentElement.querySelector(".action-error");
  const params = {};
  for (const input of button.parentElement.querySelectorAll(".action-param")) {
    if (input.value) params[input.dataset.param] = input.value;
  }
  if (button.dataset.params) Object.assign(params, JSON.parse(button.dataset.params));
  button.disabled = true;
  if (box) box.textContent = "";
  const answer = await call(button.dataset.url, button.dataset.method, params);
  button.disabled = false;
  if (answer.error) {
    if (box) box.textContent = answer.error;
    return;
  }
  if (button.dataset.method === "rebuild" && Array.isArray(answer.result)) {
    // This build is unchanged: the answer stays on screen.
    if (box) box.textContent = `rebuild requested (buildset ${answer.result[0]})`;
    return;
  }
  // What the action changed may publish no event the page listens to: have its live block read again.
  document.dispatchEvent(new CustomEvent("kiln:acted"));
});

document.addEventListener("submit", async (event) => {
  const form = event.target.closest("form.force");
  if (!form) return;
  event.preventDefault();
  for (const e of form.querySelectorAll(".field-error, .form-error")) e.textContent = "";
  const params = { builderid: form.dataset.builder };
  for (const input of form.querySelectorAll("input, select, textarea")) {
    if (!input.name) continue;
    if (input.dataset.kind === "bool") params[input.name] = input.checked;
    else if (input.dataset.kind === "int") { if (input.value !== "") params[input.name] = Number(input.value); }
    else if (input.value !== "" || input.required) params[input.name] = input.value;
  }
  const submit = form.querySelector("button[type=submit]");
  submit.disabled = true;
  const answer = await call(form.dataset.url, "force", params);
  submit.disabled = false;
  if (!answer.error) {
    form.querySelector(".form-error").textContent = "";
    for (const input of form.querySelectorAll("[aria-invalid]")) input.removeAttribute("aria-invalid");
    form.querySelector(".force-done")?.remove();
    const status = document.createElement("p");
    status.className = "force-done";
    status.setAttribute("role", "status");
    status.append(`build requested (buildset ${answer.result?.[0]}): `);
    // [bsid, {builderid: brid}]: each request links to its build (once it starts) at /requests/N.
    for (const brid of Object.values(answer.result?.[1] || {})) {
      const link = document.createElement("a");
      link.href = `/requests/${encodeURIComponent(brid)}`;
      link.textContent = `request ${brid}`;
      status.append(link, " ");
    }
    form.append(status);
    return;
  }
  // "parameter 'NAME': message" names the field.
  const named = /^parameter '([^']+)': (.*)$/s.exec(answer.error);
  const input = named && form.querySelector(`[name="${CSS.escape(named[1])}"]`);
  if (input) {
    const box = document.getElementById(`${input.id}-error`);
    if (box) box.textContent = named[2];
    input.setAttribute("aria-invalid", "true");
    input.setAttribute("aria-describedby", `${input.id}-error`);
    input.focus();
  } else {
    form.querySelector(".form-error").textContent = answer.error;
  }
});
