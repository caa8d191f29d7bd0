/* dispatch: the subscription form's proof-of-work (hashcash over SHA-256), no third party.
   Finds a counter such that sha256(challenge + ":" + email + ":" + counter) starts with
   `bits` zero bits, puts challenge and counter into the form and submits it. A form pasted
   into another site (no data-challenge) fetches a fresh challenge from <action>/challenge. */
(function () {
  "use strict";
  var K = [
    0x428a2f98, 0x71374491, 0xb5c0fbcf, 0xe9b5dba5, 0x3956c25b, 0x59f111f1, 0x923f82a4, 0xab1c5ed5,
    0xd807aa98, 0x12835b01, 0x243185be, 0x550c7dc3, 0x72be5d74, 0x80deb1fe, 0x9bdc06a7, 0xc19bf174,
    0xe49b69c1, 0xefbe4786, 0x0fc19dc6, 0x240ca1cc, 0x2de92c6f, 0x4a7484aa, 0x5cb0a9dc, 0x76f988da,
    0x983e5152, 0xa831c66d, 0xb00327c8, 0xbf597fc7, 0xc6e00bf3, 0xd5a79147, 0x06ca6351, 0x14292967,
    0x27b70a85, 0x2e1b2138, 0x4d2c6dfc, 0x53380d13, 0x650a7354, 0x766a0abb, 0x81c2c92e, 0x92722c85,
    0xa2bfe8a1, 0xa81a664b, 0xc24b8b70, 0xc76c51a3, 0xd192e819, 0xd6990624, 0xf40e3585, 0x106aa070,
    0x19a4c116, 0x1e376c08, 0x2748774c, 0x34b0bcb5, 0x391c0cb3, 0x4ed8aa4a, 0x5b9cca4f, 0x682e6ff3,
    0x748f82ee, 0x78a5636f, 0x84c87814, 0x8cc70208, 0x90befffa, 0xa4506ceb, 0xbef9a3f7, 0xc67178f2
  ];
  var W = new Int32Array(64);

  function sha256(bytes) {
    var H = [0x6a09e667, 0xbb67ae85, 0x3c6ef372, 0xa54ff53a, 0x510e527f, 0x9b05688c, 0x1f83d9ab, 0x5be0cd19];
    var len = bytes.length, n = ((len + 9 + 63) >> 6) << 6, m = new Uint8Array(n), i, o;
    m.set(bytes);
    m[len] = 0x80;
    var bitLen = len * 8;
    m[n - 4] = (bitLen >>> 24) & 255; m[n - 3] = (bitLen >>> 16) & 255;
    m[n - 2] = (bitLen >>> 8) & 255; m[n - 1] = bitLen & 255;
    for (o = 0; o < n; o += 64) {
      for (i = 0; i < 16; i++) {
        W[i] = (m[o + 4 * i] << 24) | (m[o + 4 * i + 1] << 16) | (m[o + 4 * i + 2] << 8) | m[o + 4 * i + 3];
      }
      for (i = 16; i < 64; i++) {
        var a = W[i - 15], b = W[i - 2];
        var s0 = ((a >>> 7) | (a << 25)) ^ ((a >>> 18) | (a << 14)) ^ (a >>> 3);
        var s1 = ((b >>> 17) | (b << 15)) ^ ((b >>> 19) | (b << 13)) ^ (b >>> 10);
        W[i] = (W[i - 16] + s0 + W[i - 7] + s1) | 0;
      }
      var A = H[0], B = H[1], C = H[2], D = H[3], E = H[4], F = H[5], G = H[6], X = H[7];
      for (i = 0; i < 64; i++) {
        var S1 = ((E >>> 6) | (E << 26)) ^ ((E >>> 11) | (E << 21)) ^ ((E >>> 25) | (E << 7));
        var t1 = (X + S1 + ((E & F) ^ (~E & G)) + K[i] + W[i]) | 0;
        var S0 = ((A >>> 2) | (A << 30)) ^ ((A >>> 13) | (A << 19)) ^ ((A >>> 22) | (A << 10));
        var t2 = (S0 + ((A & B) ^ (A & C) ^ (B & C))) | 0;
        X = G; G = F; F = E; E = (D + t1) | 0; D = C; C = B; B = A; A = (t1 + t2) | 0;
      }
      H[0] = (H[0] + A) | 0; H[1] = (H[1] + B) | 0; H[2] = (H[2] + C) | 0; H[3] = (H[3] + D) | 0;
      H[4] = (H[4] + E) | 0; H[5] = (H[5] + F) | 0; H[6] = (H[6] + G) | 0; H[7] = (H[7] + X) | 0;
    }
    return H;
  }

  function zeroBits(H) {
    var bits = 0;
    for (var i = 0; i < 8; i++) {
      if (H[i] === 0) { bits += 32; continue; }
      return bits + Math.clz32(H[i]);
    }
    return bits;
  }

  var encoder = new TextEncoder();
  window.dispatchPow = { sha256: sha256, zeroBits: zeroBits };

  function solve(challenge, email, bits, done) {
    var prefix = challenge + ":" + email.trim().toLowerCase() + ":";
    var counter = 0;
    (function chunk() {
      for (var end = counter + 20000; counter < end; counter++) {
        if (zeroBits(sha256(encoder.encode(prefix + counter))) >= bits) { done(counter); return; }
      }
      setTimeout(chunk, 0);
    })();
  }

  function field(form, name) {
    var input = form.querySelector("input[name='" + name + "']");
    if (!input) {
      input = document.createElement("input");
      input.type = "hidden";
      input.name = name;
      form.appendChild(input);
    }
    return input;
  }

  /* The server refuses a challenge answered less than a second after it was issued
     (proof.MIN_FORM_SECONDS, counted in whole seconds): a person who autofills the form, or
     a fast computer solving a fetched challenge, waits out the rest instead of being refused. */
  var MIN_AGE_MS = 2000;
  var loaded = Date.now();

  function afterMinAge(since, go) {
    setTimeout(go, Math.max(0, MIN_AGE_MS - (Date.now() - since)));
  }

  function withChallenge(form, use) {
    if (form.dataset.challenge) { use(form.dataset.challenge, parseInt(form.dataset.bits, 10), loaded); return; }
    var asked = Date.now();
    fetch(form.action.replace(/\/?$/, "/challenge"), { credentials: "omit" })
      .then(function (r) { return r.json(); })
      .then(function (c) { use(c.challenge, c.bits, asked); })
      .catch(function () { form.submit(); }); /* the server's no-JavaScript path decides */
  }

  function arm(form) {
    form.addEventListener("submit", function (event) {
      if (field(form, "pow").value) return;
      event.preventDefault();
      var button = form.querySelector("button[type=submit]");
      if (button) { button.disabled = true; button.dataset.label = button.textContent; button.textContent = form.dataset.working || "…"; }
      withChallenge(form, function (challenge, bits, issued) {
        var email = form.querySelector("input[name=email]").value;
        solve(challenge, email, bits, function (counter) {
          field(form, "challenge").value = challenge;
          field(form, "pow").value = String(counter);
          afterMinAge(issued, function () { form.submit(); });
        });
      });
    });
  }

  var forms = document.querySelectorAll("form[data-dispatch-subscribe]");
  for (var i = 0; i < forms.length; i++) arm(forms[i]);
})();
