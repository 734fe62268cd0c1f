// Task page: click or keys toggle images; arrows move the frame, Space toggles, Enter submits.
(function () {
  "use strict";
  var form = document.getElementById("task-form");
  if (!form) { return; }
  var KEYS = ["1", "2", "3", "4", "5", "6", "7", "8", "9", "0", "q", "w", "e", "r", "t"];
  var boxes = Array.prototype.slice.call(form.querySelectorAll("input[name=sel]"));
  var columns = 5;

  function sync(box) {
    box.parentNode.classList.toggle("selected", box.checked);
  }
  boxes.forEach(function (box) {
    box.addEventListener("change", function () { sync(box); });
    sync(box);
  });

  function focusAt(i) {
    if (i >= 0 && i < boxes.length) { boxes[i].focus(); }
  }

  document.addEventListener("keydown", function (ev) {
    if (ev.ctrlKey || ev.metaKey || ev.altKey) { return; }
    var k = ev.key.length === 1 ? ev.key.toLowerCase() : ev.key;
    var i = KEYS.indexOf(k);
    if (i >= 0 && i < boxes.length) {
      ev.preventDefault();
      boxes[i].checked = !boxes[i].checked;
      sync(boxes[i]);
      boxes[i].focus();
      return;
    }
    var at = boxes.indexOf(document.activeElement);
    if (k === "ArrowRight" || k === "ArrowLeft" || k === "ArrowDown" || k === "ArrowUp") {
      ev.preventDefault();
      if (at < 0) { focusAt(0); return; }
      var step = {ArrowRight: 1, ArrowLeft: -1, ArrowDown: columns, ArrowUp: -columns}[k];
      focusAt(Math.min(boxes.length - 1, Math.max(0, at + step)));
      return;
    }
    if (k === "Enter" && (at >= 0 || document.activeElement === document.body)) {
      ev.preventDefault();
      form.requestSubmit ? form.requestSubmit() : form.submit();
    }
  });
  form.addEventListener("submit", function () {
    var button = document.getElementById("submit");
    if (button) { button.disabled = true; button.textContent = "Saving..."; }
  });
})();
