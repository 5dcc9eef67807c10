// Validate an AsyncAPI document with the official parser, its Avro payload schemas included.
// Usage: node scripts/asyncapi/validate.mjs docs/asyncapi.yaml   (exit 1 and the errors when it is invalid)
import { readFileSync } from "node:fs";
import { Parser } from "@asyncapi/parser";
import { AvroSchemaParser } from "@asyncapi/avro-schema-parser";

const path = process.argv[2];
const parser = new Parser();
parser.registerSchemaParser(AvroSchemaParser());
const { document, diagnostics } = await parser.parse(readFileSync(path, "utf8"), { source: path });
const errors = diagnostics.filter((d) => d.severity === 0);
// The parser checks an AsyncAPI 3 document's Avro payloads only loosely: have the Avro schema parser's own
// validation read each one as written.
const avro = AvroSchemaParser();
for (const message of document?.messages() ?? []) {
  const payload = message.json("payload");
  const schema = payload?.["x-parser-original-payload"] ?? payload?.schema;
  for (const problem of await avro.validate({ data: schema, path: ["messages", message.id()] })) {
    errors.push({ severity: 0, code: "avro-schema", path: problem.path, message: problem.message });
    diagnostics.push(errors.at(-1));
  }
}
for (const d of diagnostics) {
  console.log(`${["error", "warning", "info", "hint"][d.severity]} ${d.code} at ${d.path.join(".")}: ${d.message}`);
}
if (document === undefined || errors.length > 0) {
  console.log(`invalid: ${errors.length} errors`);
  process.exit(1);
}
console.log(`valid AsyncAPI ${document.version()}: ${document.channels().length} channels, ` +
  `${document.operations().length} operations, ${document.messages().length} messages`);
