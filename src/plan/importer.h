// `tidectl import`: a SQL migration file (numbered, applied with `psql -f`, or Prisma's
// migration.sql) turned into a tide plan: each statement in the phase where it belongs, as a
// typed operation where one fits, the down file as rollback. Pure.
#pragma once

#include <string>
#include <vector>

namespace tide {

struct ImportOptions {
  std::string name;      // the plan's name ("" : from the file name)
  std::string database;  // the plan's database ("" : app)
  std::string file;      // the up file's path (for the name and the notes)
};

struct ImportNote {
  size_t statement = 0;  // 1-based, in the up file (0: the down file or the plan)
  std::string text;      // what became of it: "create_index (CONCURRENTLY)", "kept as written: ..."
  bool needs_review = false;  // kept as a raw step with a lint finding, or dropped
};

struct ImportResult {
  std::string yaml;                // the plan
  std::vector<ImportNote> notes;   // statement by statement
  std::string error;               // the file does not parse: PostgreSQL's message and where
};

ImportResult ImportSql(const std::string& up_sql, const std::string& down_sql, const ImportOptions& options);

// "019_users_display_name.sql" -> "users_display_name"; Prisma's
// "migrations/20250720211648_add_clinicid/migration.sql" -> "add_clinicid_20250720211648".
std::string PlanNameForMigration(const std::string& path);

}  // namespace tide
