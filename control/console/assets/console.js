// The console's only script (served by the binary; the pages work
// without it): copy buttons, and a confirmation before revoking,
// rotating or removing.
"use strict";
document.addEventListener("click", function (ev) {
  var b = ev.target.closest("button[data-copy]");
  if (b) {
    var input = document.getElementById(b.getAttribute("data-copy"));
    input.select();
    var done = function () { b.textContent = "Copied"; };
    if (navigator.clipboard) {
      navigator.clipboard.writeText(input.value).then(done, function () { document.execCommand("copy"); done(); });
    } else {
      document.execCommand("copy");
      done();
    }
    return;
  }
  var c = ev.target.closest("button[data-confirm]");
  if (c && !window.confirm(c.getAttribute("data-confirm"))) {
    ev.preventDefault();
  }
});
