// Validates samples against the Stepwise JSON Schemas with ajv, as a Node producer would.
// stdin: {"schemas": [schema, ...], "samples": [{"schema": "$id", "value": any}, ...]}
// stdout: {"warnings": [text, ...], "results": [{"valid": bool, "errors": [text, ...]}, ...]}
"use strict";
const Ajv2020 = require("ajv/dist/2020").default;
const addFormats = require("ajv-formats").default;

const request = JSON.parse(require("fs").readFileSync(0, "utf8"));
const warnings = [];
const logger = { log: () => {}, warn: (...parts) => warnings.push(parts.join(" ")), error: (...parts) => warnings.push(parts.join(" ")) };
const ajv = new Ajv2020({ allErrors: true, logger });
addFormats(ajv);
for (const schema of request.schemas) ajv.addSchema(schema);
const results = request.samples.map(({ schema, value }) => {
  const validate = ajv.getSchema(schema);
  if (!validate) throw new Error(`no schema with $id ${schema}`);
  const valid = validate(value);
  return { valid, errors: valid ? [] : validate.errors.map((e) => `${e.instancePath || "(root)"} ${e.message}`) };
});
process.stdout.write(JSON.stringify({ warnings, results }));
