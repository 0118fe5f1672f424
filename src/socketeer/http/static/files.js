// socketeer's files page: drag and drop, progress per file, resumable chunked uploads.
// The page works without this script (plain forms); this only makes uploading nicer.
"use strict";
(function () {
  const CHUNK = 8 * 1024 * 1024;
  const RETRIES = 8;
  const body = document.body;
  if (!body.dataset.writable) return;
  const here = body.dataset.path || "/";
  const form = document.getElementById("upload-form");
  const input = document.getElementById("file-input");
  const drop = document.getElementById("drop");
  const list = document.getElementById("progress");
  let pending = 0;

  function encodePath(path) {
    return path.split("/").map(encodeURIComponent).join("/");
  }

  function row(name) {
    const item = document.createElement("li");
    const label = document.createElement("span");
    label.textContent = name; // text, never HTML
    const bar = document.createElement("progress");
    bar.max = 1;
    bar.value = 0;
    const state = document.createElement("span");
    state.textContent = "waiting";
    item.append(label, bar, state);
    list.append(item);
    return { bar, state };
  }

  function send(url, blob) {
    // One PUT, with progress; resolves with the XHR once it has an answer.
    return new Promise((resolve, reject) => {
      const xhr = new XMLHttpRequest();
      xhr.open("PUT", url);
      xhr.setRequestHeader("Accept", "application/json");
      xhr.upload.onprogress = (event) => send.onprogress && send.onprogress(event.loaded);
      xhr.onload = () => resolve(xhr);
      xhr.onerror = () => reject(new Error("connection lost"));
      xhr.send(blob);
    });
  }

  function wait(ms) {
    return new Promise((resolve) => setTimeout(resolve, ms));
  }

  async function upload(file, relative) {
    const name = relative || file.name;
    const shown = row(name);
    const url = here + encodePath(name);
    const key = "socketeer-upload:" + url + ":" + file.size + ":" + file.lastModified;
    let offset = Number(localStorage.getItem(key) || 0);
    let fresh = offset === 0;
    let failures = 0;
    shown.state.textContent = "0%";
    while (true) {
      const end = Math.min(offset + CHUNK, file.size);
      let target = url;
      if (file.size > CHUNK) {
        target += "?offset=" + offset + "&size=" + file.size + (fresh ? "&fresh" : "");
      }
      send.onprogress = (loaded) => {
        shown.bar.value = file.size ? (offset + loaded) / file.size : 1;
        shown.state.textContent = Math.floor(shown.bar.value * 100) + "%";
      };
      let xhr;
      try {
        xhr = await send(target, file.slice(offset, end));
      } catch (error) {
        failures += 1;
        if (failures > RETRIES || file.size <= CHUNK) {
          shown.state.textContent = "failed: " + error.message;
          return;
        }
        shown.state.textContent = "reconnecting…";
        await wait(Math.min(500 * 2 ** failures, 15000));
        fresh = false;
        continue;
      }
      let answer = {};
      try { answer = JSON.parse(xhr.responseText); } catch (error) { answer = {}; }
      if (xhr.status === 409 && xhr.getResponseHeader("Upload-Offset") !== null) {
        offset = Number(xhr.getResponseHeader("Upload-Offset"));
        fresh = false;
        continue;
      }
      if (xhr.status >= 400) {
        shown.state.textContent = "failed: " + (answer.error || xhr.status);
        return;
      }
      failures = 0;
      fresh = false;
      if (xhr.status === 201 || end >= file.size) {
        localStorage.removeItem(key);
        shown.bar.value = 1;
        shown.state.textContent = "done";
        return;
      }
      offset = answer.offset;
      localStorage.setItem(key, String(offset));
    }
  }

  async function uploadAll(items) {
    pending += items.length;
    for (const [file, relative] of items) {
      await upload(file, relative);
      pending -= 1;
    }
    if (pending === 0) {
      const response = await fetch(here, { headers: { Accept: "text/html" } });
      if (response.ok) {
        const page = new DOMParser().parseFromString(await response.text(), "text/html");
        const fresh = page.querySelector("#listing tbody");
        if (fresh) document.querySelector("#listing tbody").replaceWith(fresh);
      }
    }
  }

  form.addEventListener("submit", (event) => {
    event.preventDefault();
    const items = Array.from(input.files).map((file) => [file, file.webkitRelativePath || ""]);
    input.value = "";
    uploadAll(items);
  });
  input.addEventListener("change", () => form.requestSubmit());
  for (const name of ["dragenter", "dragover"]) {
    drop.addEventListener(name, (event) => { event.preventDefault(); drop.classList.add("over"); });
  }
  for (const name of ["dragleave", "drop"]) {
    drop.addEventListener(name, () => drop.classList.remove("over"));
  }
  drop.addEventListener("drop", (event) => {
    event.preventDefault();
    uploadAll(Array.from(event.dataTransfer.files).map((file) => [file, ""]));
  });
})();
