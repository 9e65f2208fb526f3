// PgPlanDatabase's backfill batches and the key ranges (tide.backfill) they advance.
#include <algorithm>
#include <pqxx/pqxx>

#include "engine/backfill.h"
#include "engine/sql_text.h"
#include "pg/pg_database.h"
#include "pg/pg_internal.h"

namespace tide {

using pg_internal::LimitsSql;
using pg_internal::RowText;
using pg_internal::TextArray;

namespace {

// Batch transactions also turn JIT off: a batch statement runs thousands of times, each
// execution would compile its expressions again, and past jit_optimize_above_cost (a large batch
// of an index range scan) the compile alone takes a third of the batch.
// tide.backfill marks the batch's writes for the triggers of alter_column, which leave a
// shadow that the batch sets from `up` itself alone.
// A batch commits without waiting for its WAL to reach the disk (synchronous_commit off): its
// checkpoint is in the same transaction, so a crash or a failover that loses the batch loses
// its checkpoint with it, and the batch is done again. Nothing is lost or done twice; only the
// commit's wait is saved.
std::string BatchLimitsSql(const StatementLimits& l, const BatchStatement& b) {
  return LimitsSql(l) + "; SET LOCAL jit = off; SET LOCAL synchronous_commit = off; "
                        "SET LOCAL tide.backfill = " +
         QuoteLiteral(b.plan.empty() ? "-" : b.plan);
}

const char* kRangeColumns =
    "range, range_lower, range_upper, pass, done, rows_updated, rows_scanned, batches, "
    "rows_estimated, last_key, unit";

std::vector<TaskCheckpoint> RangesFromRows(const pqxx::result& r) {
  std::vector<TaskCheckpoint> out;
  for (const auto& row : r) {
    TaskCheckpoint cp;
    cp.range = row[0].as<int>();
    cp.lower = TextArray(row[1]);
    cp.upper = TextArray(row[2]);
    cp.pass = row[3].as<int>();
    cp.done = row[4].as<bool>();
    cp.rows_updated = row[5].as<int64_t>();
    cp.rows_scanned = row[6].as<int64_t>();
    cp.batches = row[7].as<int64_t>();
    cp.rows_estimated = row[8].as<int64_t>();
    cp.last_key = TextArray(row[9]);
    cp.unit = std::string(row[10].c_str()) == "page" ? RangeUnit::kPage : RangeUnit::kKey;
    out.push_back(cp);
  }
  return out;
}

std::vector<TaskCheckpoint> SelectRanges(pqxx::dbtransaction& w, const std::string& plan,
                                         int task) {
  return RangesFromRows(w.exec_params(std::string("SELECT ") + kRangeColumns +
                                          " FROM tide.backfill WHERE plan = $1 AND task = $2 "
                                          "ORDER BY range",
                                      plan, task));
}

// A key batch: its last key on the key's index (the batch size-th key after where the range
// stands, else the range's last), then the UPDATE of that key span.
BatchResult KeyBatch(pqxx::dbtransaction& w, const BatchStatement& statement,
                     const TaskCheckpoint& from, int64_t batch_size) {
  const std::vector<std::string>& lower = from.last_key.empty() ? from.lower : from.last_key;
  BatchResult b;
  const bool has_lower = !lower.empty(), has_upper = !from.upper.empty();
  std::vector<std::string> params = lower;
  params.insert(params.end(), from.upper.begin(), from.upper.end());
  std::vector<std::string> bound_params = params;
  bound_params.push_back(std::to_string(batch_size - 1));
  auto full = w.exec_params(BatchBoundSql(statement, has_lower, has_upper, false),
                            pqxx::prepare::make_dynamic_params(bound_params));
  if (!full.empty()) {
    b.last_key = RowText(full[0]);
    b.scanned = batch_size;
  } else {
    auto last = w.exec_params(BatchBoundSql(statement, has_lower, has_upper, true),
                              pqxx::prepare::make_dynamic_params(params));
    if (!last.empty()) b.last_key = RowText(last[0]);
  }
  if (!b.last_key.empty()) {
    std::vector<std::string> span = lower;
    span.insert(span.end(), b.last_key.begin(), b.last_key.end());
    auto updated = w.exec_params(BatchUpdateSql(statement, has_lower),
                                 pqxx::prepare::make_dynamic_params(span));
    b.updated = updated[0][0].as<int64_t>();
    b.unfillable = updated[0][1].as<int64_t>();
    if (full.empty()) {
      b.scanned = w.exec_params1(BatchCountSql(statement, has_lower),
                                 pqxx::prepare::make_dynamic_params(span))[0]
                      .as<int64_t>();
    }
  }
  return b;
}

std::string Tid(const HeapPos& at) {
  return "(" + std::to_string(at.page) + "," + std::to_string(at.offset) + ")";
}

// A page batch as PlanPageBatch plans it; an open range ends at the table's end as this batch
// finds it.
BatchResult PageBatch(pqxx::dbtransaction& w, const BatchStatement& statement,
                      const TaskCheckpoint& from, int64_t batch_size) {
  const int64_t end = from.upper.empty()
                          ? w.exec1(HeapPagesSql(statement.table))[0].as<int64_t>()
                          : std::stoll(from.upper.at(0));
  const PageBatchPlan plan = PlanPageBatch(from, batch_size, statement.rows_per_page, end,
                                           statement.page_shares, statement.skip_unfillable);
  BatchResult b;
  b.last_key = plan.checkpoint;
  b.reached_end = plan.empty || plan.span.reaches_end;
  if (plan.empty) return b;
  const std::string sql = PageBatchUpdateSql(statement, plan.only_changes, plan.shares);
  auto updated = plan.shares > 0
                     ? w.exec_params(sql, Tid(plan.span.from), Tid(plan.span.to), plan.share)
                     : w.exec_params(sql, Tid(plan.span.from), Tid(plan.span.to));
  b.updated = updated[0][0].as<int64_t>();
  b.unfillable = updated[0][1].as<int64_t>();
  b.scanned = std::max(b.updated + b.unfillable, plan.rows_held);
  return b;
}

}  // namespace

Result<std::vector<TaskCheckpoint>> PgPlanDatabase::LoadRanges(const std::string& plan, int task,
                                                               int pass) {
  TIDE_CONNECTED();
  try {
    pg_internal::Work w(*conn_, TxLocals());
    // A new pass starts every range from its first key again; the row counters keep adding up.
    w.exec_params0(
        "UPDATE tide.backfill SET pass = $3, last_key = '{}', done = false, updated_at = now() "
        "WHERE plan = $1 AND task = $2 AND pass < $3",
        plan, task, pass);
    auto ranges = SelectRanges(w, plan, task);
    w.commit();
    return ranges;
  } catch (...) {
    return FromCurrentException();
  }
}

Status PgPlanDatabase::ReopenTail(const std::string& plan, int task) {
  TIDE_CONNECTED();
  try {
    pg_internal::Work w(*conn_, TxLocals());
    w.exec_params0(
        "UPDATE tide.backfill SET done = false, updated_at = now() WHERE plan = $1 AND task = $2 "
        "AND range = (SELECT max(range) FROM tide.backfill WHERE plan = $1 AND task = $2)",
        plan, task);
    w.commit();
    return Status::Ok();
  } catch (...) {
    return FromCurrentException();
  }
}

Result<std::vector<TaskCheckpoint>> PgPlanDatabase::CreateRanges(
    const std::string& plan, int task, const std::string& table_name, int pass,
    const std::vector<RangeBounds>& bounds) {
  TIDE_CONNECTED();
  try {
    pg_internal::Work w(*conn_, TxLocals());
    // One task's ranges are created together or not at all.
    w.exec_params("SELECT pg_advisory_xact_lock(hashtext($1), $2)", plan, task);
    if (SelectRanges(w, plan, task).empty()) {
      for (size_t i = 0; i < bounds.size(); ++i) {
        w.exec_params0(
            "INSERT INTO tide.backfill (plan, task, range, range_lower, range_upper, table_name, "
            "pass, rows_estimated, unit) VALUES ($1, $2, $3, $4::text[], $5::text[], $6, $7, $8, $9)",
            plan, task, static_cast<int>(i), TextArrayLiteral(bounds[i].lower),
            TextArrayLiteral(bounds[i].upper), table_name, pass, bounds[i].rows_estimated,
            ToString(bounds[i].unit));
      }
    }
    auto ranges = SelectRanges(w, plan, task);
    w.commit();
    return ranges;
  } catch (...) {
    return FromCurrentException();
  }
}

Result<BatchResult> PgPlanDatabase::RunBatch(const std::string& plan, int task,
                                             const BatchStatement& statement,
                                             const TaskCheckpoint& from, int64_t batch_size,
                                             const StatementLimits& limits) {
  TIDE_CONNECTED();
  try {
    pg_internal::Work w(*conn_, TxLocals() + "; " + BatchLimitsSql(limits, statement));
    BatchResult b;
    if (from.unit == RangeUnit::kPage) {
      b = PageBatch(w, statement, from, batch_size);
    } else {
      b = KeyBatch(w, statement, from, batch_size);
    }
    const TaskCheckpoint next = AdvanceCheckpoint(from, b, batch_size);
    // Guarded by the batch count this batch started from: if anything else moved the
    // checkpoint, this batch rolls back instead of doing the same rows twice.
    auto moved = w.exec_params(
        "UPDATE tide.backfill SET last_key = $3::text[], done = $4, rows_updated = $5, "
        "rows_scanned = $6, batches = $7, updated_at = now() "
        "WHERE plan = $1 AND task = $2 AND range = $10 AND batches = $8 AND pass = $9",
        plan, task, TextArrayLiteral(next.last_key), next.done, next.rows_updated,
        next.rows_scanned, next.batches, from.batches, from.pass, from.range);
    if (moved.affected_rows() != 1) {
      return Status::Retryable("the checkpoint of task " + std::to_string(task) + " range " +
                               std::to_string(from.range) + " moved during the batch; re-reading it");
    }
    w.commit();
    return b;
  } catch (...) {
    return FromCurrentException();
  }
}

Result<UnfillableRows> PgPlanDatabase::CountUnfillable(const BatchStatement& statement,
                                                       const StatementLimits& limits) {
  TIDE_CONNECTED();
  try {
    pg_internal::Work w(*conn_, "SET TRANSACTION READ ONLY; " + TxLocals() + "; " +
                                    BatchLimitsSql(limits, statement));
    auto r = w.exec1(UnfillableSql(statement));
    return UnfillableRows{r[0].as<int64_t>(), r[1].c_str()};
  } catch (...) {
    return FromCurrentException();
  }
}

Result<BatchResult> PgPlanDatabase::RunSweep(const BatchStatement& statement, int64_t batch_size,
                                             const StatementLimits& limits) {
  TIDE_CONNECTED();
  try {
    pg_internal::Work w(*conn_, TxLocals() + "; " + BatchLimitsSql(limits, statement));
    auto r = w.exec_params1(SweepSql(statement), batch_size);
    BatchResult b;
    b.scanned = r[0].as<int64_t>();
    b.updated = r[1].as<int64_t>();
    w.commit();
    return b;
  } catch (...) {
    return FromCurrentException();
  }
}

Result<BatchResult> PgPlanDatabase::RunVerify(const BatchStatement& statement,
                                               const std::vector<std::string>& after,
                                               int64_t batch_size, const StatementLimits& limits) {
  TIDE_CONNECTED();
  try {
    pg_internal::Work w(*conn_, "SET TRANSACTION READ ONLY; " + TxLocals() + "; " +
                                    BatchLimitsSql(limits, statement));
    std::vector<std::string> params = after;
    params.push_back(std::to_string(batch_size));
    auto r = w.exec_params1(VerifyBatchSql(statement, !after.empty()),
                            pqxx::prepare::make_dynamic_params(params));
    BatchResult v;
    v.scanned = r[0].as<int64_t>();
    v.differing = r[1].as<int64_t>();
    v.differing_keys = TextArray(r[2]);
    if (!r[3].is_null()) {
      for (pqxx::row::size_type i = 3; i < r.size(); ++i) v.last_key.push_back(r[i].c_str());
    }
    return v;
  } catch (...) {
    return FromCurrentException();
  }
}

}  // namespace tide
