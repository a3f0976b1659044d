// MongoDB's users, created once by the mongo image on its first start (an empty data volume), as the administrator
// (MONGO_INITDB_ROOT_USERNAME / _PASSWORD_FILE). Compose mounts, at /run/secrets, each service's MONGODB_URL file
// (mongodb_<service>_url, written by `python3 -m tools.deploy.secrets`): the user and password in it get readWrite
// on the database it names, and nothing else; mongodb_backup_url's user gets the backup role (reads every database).
// A new service needs only its URL file mounted here. To add a user to an existing volume, run the same
// createUser as the administrator (docs/deployment.md, "MongoDB users").
const fs = require("fs");

function login(file) {
  const url = new URL(fs.readFileSync(`/run/secrets/${file}`, "utf8").trim());
  return {
    user: decodeURIComponent(url.username),
    pwd: decodeURIComponent(url.password),
    database: url.pathname.replace(/^\//, ""),
  };
}

for (const file of fs.readdirSync("/run/secrets").sort()) {
  const service = /^mongodb_(.+)_url$/.exec(file);
  if (!service || service[1] === "backup") continue;
  const { user, pwd, database } = login(file);
  db.getSiblingDB(database).createUser({ user, pwd, roles: [{ role: "readWrite", db: database }] });
  print(`created ${user}: readWrite on ${database} only`);
}

const backup = login("mongodb_backup_url");
db.getSiblingDB("admin").createUser({ user: backup.user, pwd: backup.pwd, roles: [{ role: "backup", db: "admin" }] });
print(`created ${backup.user}: backup (reads every database)`);
