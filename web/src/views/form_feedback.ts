// What the trade form makes of its request's outcome: which fields to highlight, what to say
// above the submit button, and whether the next request needs a new id.
import { describeFailure, type ApiFailure, type FieldProblem } from "../api/errors";
import { F } from "../validation";
import type { Outcome } from "./execution";

export interface FormFeedback {
  /** The request id is spent (it names a trade) or was itself the problem. */
  renewRequestId: boolean;
  /** Shown at their fields. */
  errors: FieldProblem[];
  /** Shown above the submit button; none when the execution card says it all. */
  summary?: string;
}

// Refusals without a field violation that are still about one field: the trader fixes it there.
const REASON_FIELD: Record<string, string> = {
  INSUFFICIENT_FUNDS: F.amount,
  NO_ROUTE: F.amount,
  PRICE_IMPACT_TOO_HIGH: F.amount,
};

// A trade that ended like this was stopped (here, elsewhere, or by its deadline): nothing in
// the form was wrong, and the execution card shows how it ended.
const STOPPED = new Set(["TRADE_STATUS_CANCELLED", "TRADE_STATUS_EXPIRED"]);

export function formFeedback(outcome: Outcome): FormFeedback {
  if (outcome.ok) return { renewRequestId: true, errors: [] };
  const f = outcome.failure;
  if (outcome.isTrade && STOPPED.has(f.metadata["status"] ?? "")) return { renewRequestId: true, errors: [] };
  const errors = fieldsOf(f);
  const aboutId = errors.some((e) => e.field === F.requestId);
  return {
    renewRequestId: outcome.isTrade || aboutId,
    errors,
    // The problems are shown at their fields; the summary names the refusal, once.
    summary: errors.length
      ? `${f.reason || f.codeName}: the gateway refused the highlighted ${errors.length === 1 ? "field" : "fields"}`
      : describeFailure(f),
  };
}

function fieldsOf(f: ApiFailure): FieldProblem[] {
  if (f.fieldViolations.length) return f.fieldViolations;
  const field = REASON_FIELD[f.reason];
  return field ? [{ field, description: f.message }] : [];
}
