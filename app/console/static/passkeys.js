// Passkeys for the Pitwarden console: the only script the console has. Pages work without it;
// it adds "Add a passkey" and "Sign in with a passkey" where the browser supports WebAuthn.
(function () {
  "use strict";
  if (!window.PublicKeyCredential) { return; }
  const b64 = {
    toBuffer(text) {
      const base = text.replace(/-/g, "+").replace(/_/g, "/");
      const padded = base + "=".repeat((4 - (base.length % 4)) % 4);
      return Uint8Array.from(atob(padded), (c) => c.charCodeAt(0)).buffer;
    },
    fromBuffer(buffer) {
      const bytes = String.fromCharCode(...new Uint8Array(buffer));
      return btoa(bytes).replace(/\+/g, "-").replace(/\//g, "_").replace(/=+$/, "");
    },
  };
  async function post(url, fields) {
    const body = new URLSearchParams(fields);
    const answer = await fetch(url, { method: "POST", body, credentials: "same-origin" });
    const json = await answer.json().catch(() => ({ error: "The server did not answer." }));
    if (!answer.ok) { throw new Error(json.error || "Refused."); }
    return json;
  }
  function say(form, text) {
    const out = form.querySelector("[data-passkey-status]");
    if (out) { out.textContent = text; }
  }
  async function register(form) {
    const csrf = form.elements.csrf.value;
    const options = await post("/console/passkeys/options", { csrf });
    options.challenge = b64.toBuffer(options.challenge);
    options.user.id = b64.toBuffer(options.user.id);
    (options.excludeCredentials || []).forEach((c) => { c.id = b64.toBuffer(c.id); });
    const made = await navigator.credentials.create({ publicKey: options });
    const credential = {
      id: made.id, rawId: b64.fromBuffer(made.rawId), type: made.type,
      response: {
        clientDataJSON: b64.fromBuffer(made.response.clientDataJSON),
        attestationObject: b64.fromBuffer(made.response.attestationObject),
        transports: made.response.getTransports ? made.response.getTransports() : [],
      },
      clientExtensionResults: made.getClientExtensionResults(),
    };
    const name = form.elements.name ? form.elements.name.value : "Passkey";
    const done = await post("/console/passkeys", { csrf, name, credential: JSON.stringify(credential) });
    window.location.assign(done.next);
  }
  async function signIn(form) {
    const csrf = form.elements.csrf.value;
    const next = form.elements.next ? form.elements.next.value : "/console";
    const options = await post("/console/passkeys/sign-in/options", { csrf });
    options.challenge = b64.toBuffer(options.challenge);
    (options.allowCredentials || []).forEach((c) => { c.id = b64.toBuffer(c.id); });
    const got = await navigator.credentials.get({ publicKey: options });
    const credential = {
      id: got.id, rawId: b64.fromBuffer(got.rawId), type: got.type,
      response: {
        clientDataJSON: b64.fromBuffer(got.response.clientDataJSON),
        authenticatorData: b64.fromBuffer(got.response.authenticatorData),
        signature: b64.fromBuffer(got.response.signature),
        userHandle: got.response.userHandle ? b64.fromBuffer(got.response.userHandle) : null,
      },
      clientExtensionResults: got.getClientExtensionResults(),
    };
    const done = await post("/console/passkeys/sign-in", { csrf, next, credential: JSON.stringify(credential) });
    window.location.assign(done.next);
  }
  document.querySelectorAll("form[data-passkey]").forEach((form) => {
    form.hidden = false;
    form.addEventListener("submit", (event) => {
      event.preventDefault();
      const run = form.dataset.passkey === "register" ? register : signIn;
      say(form, "Waiting for your passkey…");
      run(form).catch((error) => say(form, error.message || String(error)));
    });
  });
}());
