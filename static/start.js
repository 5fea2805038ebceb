// Starts the web client built by `cargo xtask build-client` into /pkg, or says why it cannot.
// A file of its own, not an inline script: the page's Content-Security-Policy allows none.
const status = document.getElementById("status");
try {
  // The wasm compiles while the glue module loads, not after it (the page preloads both):
  // on a warm load that is most of the time between the script starting and the socket
  // opening. A server that sends the wasm with another type fails `compileStreaming`; the
  // glue then fetches and compiles it its own way.
  const compiled = WebAssembly.compileStreaming(fetch("/pkg/web_client_bg.wasm"))
    .catch(() => undefined);
  const client = await import("/pkg/web_client.js");
  const module = await compiled;
  await client.default(module === undefined ? undefined : { module_or_path: module });
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
