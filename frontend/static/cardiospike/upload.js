// The upload page: refuse files over the upload limit before sending them. The server refuses
// them too (413), but only after the browser has sent every byte, which for a file of
// 100 MB takes a while and then replaces the form with an error page.
(function () {
  "use strict";

  var form = document.getElementById("upload-form");
  var input = document.getElementById("id_files");
  var message = document.getElementById("upload-size-error");
  var maxBytes = Number(form.dataset.maxBytes);

  function mib(bytes) { return (bytes / 1048576).toFixed(1); }

  // Whether the selected files together are over the limit; shows or hides the message.
  function check() {
    var total = 0;
    Array.prototype.forEach.call(input.files, function (file) { total += file.size; });
    var tooLarge = total > maxBytes;
    message.hidden = !tooLarge;
    message.textContent = tooLarge ? "The selected files are " + mib(total) + " MiB together; " +
      "an upload may be at most " + form.dataset.maxMib + " MiB. Split the recording into " +
      "shorter files and upload them one at a time." : "";
    return tooLarge;
  }

  input.addEventListener("change", check);
  form.addEventListener("submit", function (event) {
    if (check()) { event.preventDefault(); }
  });
})();
