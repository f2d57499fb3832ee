/* Small behaviours shared by the dashboard pages. Plain <script defer>, no build step.
 *
 * Menus are <details data-menu>: they open and close without script; this
 * closes an open one on Escape (returning focus to its toggle) and on a
 * click outside it, as a menu is expected to.
 */
(function () {
  "use strict";

  function openMenus() {
    return document.querySelectorAll("details[data-menu][open]");
  }

  document.addEventListener("click", (event) => {
    for (const menu of openMenus()) {
      if (!menu.contains(event.target)) menu.open = false;
    }
  });

  document.addEventListener("keydown", (event) => {
    if (event.key !== "Escape") return;
    for (const menu of openMenus()) {
      const hadFocus = menu.contains(document.activeElement);
      menu.open = false;
      if (hadFocus) menu.querySelector("summary").focus();
    }
  });
})();
