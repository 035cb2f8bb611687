// A pass-through HTTP proxy that adds `Authorization: Bearer $FLOTILLA_TOKEN` to every
// request, for tools that cannot send headers (the MCP conformance suite). Everything
// else — Host, Origin, bodies, streamed (SSE) responses — passes unchanged, so
// flotilla's own checks still see what the client sent.
// Usage: FLOTILLA_TOKEN=… node bearer-proxy.mjs http://127.0.0.1:PORT  (prints its port)
import http from "node:http";

const upstream = new URL(process.argv[2]);
const token = process.env.FLOTILLA_TOKEN;
if (!token) {
  console.error("FLOTILLA_TOKEN is not set");
  process.exit(2);
}

const server = http.createServer((req, res) => {
  const headers = { ...req.headers, authorization: `Bearer ${token}` };
  const forward = http.request(
    { host: upstream.hostname, port: upstream.port, path: req.url, method: req.method, headers },
    (reply) => {
      res.writeHead(reply.statusCode, reply.headers);
      reply.pipe(res);
    },
  );
  forward.on("error", (e) => {
    if (!res.headersSent) res.writeHead(502);
    res.end(String(e));
  });
  res.on("close", () => forward.destroy());
  req.pipe(forward);
});
server.listen(0, "127.0.0.1", () => console.log(server.address().port));
