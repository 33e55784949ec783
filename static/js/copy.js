// A "Copy" button (data-copy="#element") copies that element's text. Without JavaScript the button stays hidden
// and the text can be selected and copied by hand.
document.querySelectorAll("button[data-copy]").forEach(function (button) {
  if (!navigator.clipboard) return;
  button.hidden = false;
  button.addEventListener("click", function () {
    var text = document.querySelector(button.dataset.copy).textContent.trim();
    navigator.clipboard.writeText(text).then(function () { button.textContent = "Copied"; },
                                             function () { button.textContent = "Copy failed: select the text"; });
  });
});
