/* Drag and drop for the desk's scans, with each file's upload progress. It only enhances the
   plain multipart form (which works without it): files dropped on a zone go into its file input,
   and the form is then sent with XMLHttpRequest so the upload's progress can be shown.
   Texts come from the page (data-* attributes rendered from the catalogue). */
(function () {
  "use strict";
  var form = document.querySelector("form[data-upload]");
  if (!form || !window.FormData || !window.XMLHttpRequest) { return; }
  var d = form.dataset;
  var limit = parseInt(d.maxBytes, 10) || 20 * 1024 * 1024;
  var inputs = Array.prototype.slice.call(form.querySelectorAll("input[type=file]"));

  function size(n) { return (n / 1048576).toFixed(1).replace(".", d.decimal || ",") + " MB"; }

  inputs.forEach(function (input) {
    var zone = document.createElement("div");
    zone.className = "drop";
    zone.tabIndex = 0;
    zone.setAttribute("role", "button");
    zone.setAttribute("aria-describedby", input.id + "-state");
    zone.textContent = d.dropText;
    var state = document.createElement("p");
    state.id = input.id + "-state";
    state.className = "small";
    state.setAttribute("aria-live", "polite");
    var bar = document.createElement("progress");
    bar.max = 100; bar.value = 0; bar.hidden = true;
    bar.setAttribute("aria-label", d.progressText + " " + (input.labels && input.labels[0] ? input.labels[0].textContent : ""));
    input.insertAdjacentElement("afterend", zone);
    zone.insertAdjacentElement("afterend", state);
    state.insertAdjacentElement("afterend", bar);
    input.classList.add("drop-input");
    input.tabIndex = -1;  // the zone is the one keyboard stop for this scan
    input._state = state; input._bar = bar;

    function show() {
      var f = input.files[0];
      input.setCustomValidity(f && f.size > limit ? d.tooBig : "");
      state.textContent = f ? f.name + " (" + size(f.size) + ")" + (f.size > limit ? " — " + d.tooBig : "") : "";
      zone.classList.toggle("has-file", !!f);
    }
    input.addEventListener("change", show);
    zone.addEventListener("click", function () { input.click(); });
    zone.addEventListener("keydown", function (e) {
      if (e.key === "Enter" || e.key === " ") { e.preventDefault(); input.click(); }
    });
    ["dragenter", "dragover"].forEach(function (type) {
      zone.addEventListener(type, function (e) { e.preventDefault(); zone.classList.add("over"); });
    });
    zone.addEventListener("dragleave", function () { zone.classList.remove("over"); });
    zone.addEventListener("drop", function (e) {
      e.preventDefault();
      zone.classList.remove("over");
      if (e.dataTransfer && e.dataTransfer.files.length) {
        var one = new DataTransfer();
        one.items.add(e.dataTransfer.files[0]);
        input.files = one.files;
        show();
      }
    });
  });

  form.addEventListener("submit", function (e) {
    if (!form.checkValidity()) { return; }
    e.preventDefault();
    var button = form.querySelector("button[type=submit]");
    if (button) { button.disabled = true; }
    // the body carries the files in form order: each file's share of the bytes sent so far
    var chosen = inputs.filter(function (i) { return i.files.length; });
    var offset = 0;
    chosen.forEach(function (i) {
      i._from = offset; offset += i.files[0].size; i._to = offset;
      i._bar.hidden = false; i._bar.value = 0;
    });
    var xhr = new XMLHttpRequest();
    xhr.open("POST", form.action);
    xhr.upload.addEventListener("progress", function (p) {
      if (!p.lengthComputable) { return; }
      var sent = p.loaded * offset / p.total;
      chosen.forEach(function (i) {
        var part = (sent - i._from) / Math.max(1, i._to - i._from);
        i._bar.value = Math.round(100 * Math.min(1, Math.max(0, part)));
        i._state.textContent = i.files[0].name + ": " + i._bar.value + " %";
      });
    });
    xhr.addEventListener("load", function () {
      // the page the server answered (the dossier after its redirect, whose notice is read only
      // once; or the form again with the refusal and what was typed) becomes this page
      if (xhr.responseURL) { history.replaceState(null, "", xhr.responseURL); }
      document.open(); document.write(xhr.responseText); document.close();
    });
    xhr.addEventListener("error", function () {
      if (button) { button.disabled = false; }
      chosen.forEach(function (i) { i._state.textContent = d.failedText; });
    });
    xhr.send(new FormData(form));
  });
}());
