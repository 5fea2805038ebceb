// Starts the web client built by `cargo xtask build-client` into /pkg, or says why it cannot.
// A file of its own, not an inline script: the page's Content-Security-Policy allows none.
const status = document.getElementById("status");
try {
  const client = await import("/pkg/web_client.js");
  await client.default();
  client.start();
} catch (error) {
  console.error(error);
  status.dataset.status = "closed";
  status.textContent = "The web client could not start.";
  const help = document.createElement("p");
  help.className = "problem";
  help.textContent = error instanceof TypeError && /import|fetch|module/i.test(error.message)
    ? "The web client has not been built yet: run `cargo xtask serve` (or `cargo xtask build-client`) and reload."
    : "Error: " + error;
  document.querySelector("main").append(help);
}
