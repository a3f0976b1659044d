// Parses AsyncAPI documents with the official parser (@asyncapi/parser) and reports every diagnostic.
// stdin: {"documents": {"name": "yaml text", ...}}
// stdout: {"name": [{"severity": 0..3, "code": text, "message": text, "path": text}, ...], ...}
"use strict";
const { Parser } = require("@asyncapi/parser");

async function main() {
  const request = JSON.parse(require("fs").readFileSync(0, "utf8"));
  const parser = new Parser();
  const answer = {};
  for (const [name, text] of Object.entries(request.documents)) {
    const { document, diagnostics } = await parser.parse(text);
    answer[name] = diagnostics.map((d) => ({
      severity: d.severity, code: String(d.code), message: d.message, path: d.path.join("/"),
    }));
    if (!document) answer[name].push({ severity: 0, code: "unparsed", message: "no document", path: "" });
  }
  process.stdout.write(JSON.stringify(answer));
}
main().catch((error) => { console.error(error); process.exit(1); });
