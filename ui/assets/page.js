() => {
  // Runs once per page load (ui/app.py passes this function as the Blocks' load event): routes clicks on
  // citation chips to the hidden "open card" event, refuses files over the upload limit before they leave the
  // browser (with the message in the page's language), and returns the interface language (the user's earlier
  // choice, else the browser's). ui/app.py fills in `upload`: the limit in bytes, and per language the message.
  if (!window.ragUi) {
    window.ragUi = { chip: "" };
    const upload = __UPLOAD__;
    // Sizes written as ui/i18n.py `megabytes` writes them, so both sides of the limit read the same.
    const megabytes = (size, lang, exact) => {
      const value = size / 1048576;
      const text = exact && Number.isInteger(value) ? value.toFixed(0) : value.toFixed(1);
      return lang === "fr" ? `${text.replace(".", ",")} Mo` : `${text} MB`;
    };
    const refuseLarge = (event, files) => {
      const large = Array.from(files || []).filter((file) => file.size > upload.limit);
      if (!large.length || !event.target.closest?.("#rag-upload")) return;
      event.preventDefault();
      event.stopImmediatePropagation();
      if (event.type === "change") event.target.value = "";
      const lang = document.documentElement.lang === "fr" ? "fr" : "en";
      const limit = megabytes(upload.limit, lang, true);
      const lines = large.map((file) =>
        upload.messages[lang].replace("{name}", file.name).replace("{size}", megabytes(file.size, lang))
          .replace("{limit}", limit));
      const shown = document.querySelector("#rag-upload-error");
      if (shown) shown.textContent = lines.join(" · ");
    };
    document.addEventListener("change", (event) => refuseLarge(event, event.target.files), true);
    document.addEventListener("drop", (event) => refuseLarge(event, event.dataTransfer?.files), true);
    document.addEventListener("click", (event) => {
      const chip = event.target.closest("button.cite-chip");
      const key = chip && /cite-key-(\d+)-(\d+)/.exec(chip.className);
      if (key) {
        event.preventDefault();
        document.querySelectorAll(".cite-chip.active").forEach((c) => c.classList.remove("active"));
        chip.classList.add("active");
        window.ragUi.chip = `${key[1]}:${key[2]}`;
        document.querySelector("#cite-open")?.click();
        return;
      }
      const back = event.target.closest("[data-back-key]");
      if (back) {
        const target = document.querySelector(`.cite-key-${back.dataset.backKey.replace(":", "-")}`);
        target?.scrollIntoView({ block: "center" });
        target?.focus();
      }
    });
  }
  const saved = window.localStorage.getItem("rag-ui-lang");
  const lang = (saved || navigator.language || "en").slice(0, 2).toLowerCase() === "fr" ? "fr" : "en";
  document.documentElement.lang = lang;
  return lang;
}
