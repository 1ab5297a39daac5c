/*-------------------------------------------------------------------------
 *
 * history.c
 *	  The order audit history: append-only, hash-chained per order.
 *
 * Every accepted state change appends one row to orderflow.order_events.
 * Each row carries the SHA-256 of the previous row's hash followed by its
 * own fields (the layout is in doc/history.md), and the order row keeps the
 * position and hash of its newest event, so removing, changing or
 * reordering events, or cutting the chain short, is detected by
 * orderflow.verify_history().
 *
 * Rows are written by the trigger itself, straight into the table and its
 * indexes: no role but the owner holds INSERT, UPDATE, DELETE or TRUNCATE
 * on it, and a trigger refuses UPDATE, DELETE and TRUNCATE even to the
 * owner.
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include "access/htup_details.h"
#include "access/heapam.h"
#include "access/table.h"
#include "catalog/pg_class.h"
#include "catalog/pg_type.h"
#include "commands/trigger.h"
#if PG_VERSION_NUM >= 140000
#include "common/cryptohash.h"
#else
#include "common/sha2.h"
#endif
#include "executor/executor.h"
#include "executor/spi.h"
#include "funcapi.h"
#include "miscadmin.h"
#include "utils/builtins.h"
#include "utils/timestamp.h"
#include "utils/tuplestore.h"
#include "utils/xid8.h"

#include "orderflow.h"

/* SHA-256 through the server's API: pg_cryptohash from PostgreSQL 14 on. */
#if PG_VERSION_NUM >= 140000
typedef pg_cryptohash_ctx *HashCtx;
#else
typedef pg_sha256_ctx *HashCtx;
#endif

static void
HashBytes(HashCtx ctx, const void *data, size_t len)
{
#if PG_VERSION_NUM >= 140000
	if (pg_cryptohash_update(ctx, (const uint8 *) data, len) < 0)
		elog(ERROR, "could not update SHA-256 hash");
#else
	pg_sha256_update(ctx, (const uint8 *) data, len);
#endif
}

static void
HashInt64(HashCtx ctx, uint64 v)
{
	uint8		b[8];

	for (int i = 7; i >= 0; i--)
	{
		b[i] = (uint8) (v & 0xFF);
		v >>= 8;
	}
	HashBytes(ctx, b, 8);
}

static void
HashInt32(HashCtx ctx, uint32 v)
{
	uint8		b[4] = {(uint8) (v >> 24), (uint8) (v >> 16), (uint8) (v >> 8), (uint8) v};

	HashBytes(ctx, b, 4);
}

/* Text as a 4-byte length (0xFFFFFFFF for NULL) and its bytes. */
static void
HashText(HashCtx ctx, const char *s)
{
	if (s == NULL)
	{
		HashInt32(ctx, 0xFFFFFFFF);
		return;
	}
	HashInt32(ctx, (uint32) strlen(s));
	HashBytes(ctx, s, strlen(s));
}

/*
 * hash = SHA-256(prev_hash || order_id || seq || from || to || at || xid ||
 *				  session_role || acting_role || application_name || reason)
 */
void
HistoryEventHash(const HistoryEvent *ev, uint8 *hash)
{
	uint8		states[2];
#if PG_VERSION_NUM >= 140000
	HashCtx		ctx = pg_cryptohash_create(PG_SHA256);

	if (ctx == NULL || pg_cryptohash_init(ctx) < 0)
		elog(ERROR, "could not initialize SHA-256 hash");
#else
	pg_sha256_ctx sha;
	HashCtx		ctx = &sha;

	pg_sha256_init(ctx);
#endif
	if (ev->prev_hash)
		HashBytes(ctx, ev->prev_hash, HISTORY_HASH_LEN);
	HashInt64(ctx, (uint64) ev->order_id);
	HashInt32(ctx, (uint32) ev->seq);
	states[0] = ev->from_state < 0 ? 0xFF : (uint8) ev->from_state;
	states[1] = (uint8) ev->to_state;
	HashBytes(ctx, states, 2);
	HashInt64(ctx, (uint64) ev->at);
	HashInt64(ctx, ev->xid);
	HashText(ctx, ev->session_role);
	HashText(ctx, ev->acting_role);
	HashText(ctx, ev->application_name);
	HashText(ctx, ev->reason);
#if PG_VERSION_NUM >= 140000
	if (pg_cryptohash_final(ctx, hash, HISTORY_HASH_LEN) < 0)
		elog(ERROR, "could not finalize SHA-256 hash");
	pg_cryptohash_free(ctx);
#else
	pg_sha256_final(ctx, hash);
#endif
}

static bytea *
HashToBytea(const uint8 *hash)
{
	bytea	   *b = (bytea *) palloc(VARHDRSZ + HISTORY_HASH_LEN);

	SET_VARSIZE(b, VARHDRSZ + HISTORY_HASH_LEN);
	memcpy(VARDATA(b), hash, HISTORY_HASH_LEN);
	return b;
}

/*
 * Insert one event row.  The row goes straight into the heap and its
 * indexes, as the trigger's own work: no role's INSERT privilege is needed
 * (none holds it), and the table has no INSERT triggers or constraints
 * beyond NOT NULL, which the values always satisfy.
 */
void
HistoryAppend(const HistoryEvent *ev, const uint8 *hash)
{
	static const char *const columns[12] = {
		"order_id", "seq", "from_state", "to_state", "at", "session_role",
		"acting_role", "application_name", "reason", "xid", "prev_hash", "hash"
	};
	DirectInsert di;
	Datum		values[12];
	bool		nulls[12];
	NameData	session_role;
	NameData	acting_role;

	DirectInsertOpen(&di, HistoryRelid(), columns, lengthof(columns));

	memset(nulls, false, sizeof(nulls));
	namestrcpy(&session_role, ev->session_role);
	namestrcpy(&acting_role, ev->acting_role);
	values[0] = Int64GetDatum(ev->order_id);
	values[1] = Int32GetDatum(ev->seq);
	if (ev->from_state < 0)
		nulls[2] = true;
	else
		values[2] = OrderStateGetDatum((OrderState) ev->from_state);
	values[3] = OrderStateGetDatum((OrderState) ev->to_state);
	values[4] = TimestampTzGetDatum(ev->at);
	values[5] = NameGetDatum(&session_role);
	values[6] = NameGetDatum(&acting_role);
	if (ev->application_name)
		values[7] = CStringGetTextDatum(ev->application_name);
	else
		nulls[7] = true;
	if (ev->reason)
		values[8] = CStringGetTextDatum(ev->reason);
	else
		nulls[8] = true;
	values[9] = FullTransactionIdGetDatum(FullTransactionIdFromU64(ev->xid));
	if (ev->prev_hash)
		values[10] = PointerGetDatum(HashToBytea(ev->prev_hash));
	else
		nulls[10] = true;
	values[11] = PointerGetDatum(HashToBytea(hash));

	DirectInsertRow(&di, values, nulls);
	DirectInsertClose(&di);
}

/*
 * Trigger on orderflow.order_events: the history is append-only.
 */
PG_FUNCTION_INFO_V1(order_history_immutable_trigger);
Datum
order_history_immutable_trigger(PG_FUNCTION_ARGS)
{
	TriggerData *trigdata = (TriggerData *) fcinfo->context;
	const char *what;

	CheckTriggerCall(fcinfo, "order_history_immutable_trigger", true, -1, NULL, NULL);

	if (TRIGGER_FIRED_BY_UPDATE(trigdata->tg_event))
		what = "UPDATE";
	else if (TRIGGER_FIRED_BY_DELETE(trigdata->tg_event))
		what = "DELETE";
	else if (TRIGGER_FIRED_BY_TRUNCATE(trigdata->tg_event))
		what = "TRUNCATE";
	else
		ereport(ERROR,
				(errcode(ERRCODE_E_R_I_E_TRIGGER_PROTOCOL_VIOLATED),
				 errmsg("function \"%s\" must be fired for UPDATE, DELETE or TRUNCATE",
						"order_history_immutable_trigger")));

	ereport(ERROR,
			(errcode(ERRCODE_OF_HISTORY_IMMUTABLE),
			 errmsg("%s of the order history is not allowed", what),
			 errdetail("Table \"%s\" is append-only.",
					   RelationGetRelationName(trigdata->tg_relation))));
	return PointerGetDatum(NULL);
}

static void
AddProblem(Tuplestorestate *tupstore, TupleDesc desc, int32 seq,
		   const char *problem)
{
	Datum		values[2] = {Int32GetDatum(seq), CStringGetTextDatum(problem)};
	bool		nulls[2] = {false, false};

	tuplestore_putvalues(tupstore, desc, values, nulls);
}

static bool
HashEquals(HeapTuple tuple, TupleDesc desc, int col, const uint8 *hash)
{
	bool		isnull;
	Datum		d = SPI_getbinval(tuple, desc, col, &isnull);
	bytea	   *b;

	if (isnull)
		return hash == NULL;
	if (hash == NULL)
		return false;
	b = DatumGetByteaPP(d);
	return VARSIZE_ANY_EXHDR(b) == HISTORY_HASH_LEN &&
		memcmp(VARDATA_ANY(b), hash, HISTORY_HASH_LEN) == 0;
}

static char *
NullableText(HeapTuple tuple, TupleDesc desc, int col)
{
	bool		isnull;
	Datum		d = SPI_getbinval(tuple, desc, col, &isnull);

	return isnull ? NULL : TextDatumGetCString(d);
}

/*
 * orderflow.verify_history(order_id): walk the order's events in sequence
 * order, recompute the chain, and return the first broken link (no rows
 * when the history is intact).
 */
PG_FUNCTION_INFO_V1(order_verify_history);
Datum
order_verify_history(PG_FUNCTION_ARGS)
{
	int64		order_id = PG_GETARG_INT64(0);
	TupleDesc	result_desc;
	Tuplestorestate *tupstore = MaterializeResult(fcinfo, &result_desc);
	Oid			argtypes[1] = {INT8OID};
	Datum		args[1] = {Int64GetDatum(order_id)};
	uint8		prev[HISTORY_HASH_LEN];
	bool		have_prev = false;
	int32		expected_seq = 1;
	int			prev_to = -1;
	uint64		n;
	bool		broken = false;
	MemoryContext per_query = CurrentMemoryContext;
	int32		head_seq;
	bool		head_null;
	bool		head_hash_ok = false;
	uint8		head_hash[HISTORY_HASH_LEN];

	if (SPI_connect() != SPI_OK_CONNECT)
		elog(ERROR, "SPI_connect failed");

	if (SPI_execute_with_args("SELECT history_seq, history_hash FROM orderflow.orders WHERE id = $1",
							  1, argtypes, args, NULL, true, 1) != SPI_OK_SELECT)
		elog(ERROR, "order lookup failed");
	if (SPI_processed == 0)
		ereport(ERROR,
				(errcode(ERRCODE_OF_ORDER_NOT_FOUND),
				 errmsg("order %lld does not exist", (long long) order_id)));
	head_seq = DatumGetInt32(SPI_getbinval(SPI_tuptable->vals[0],
										   SPI_tuptable->tupdesc, 1, &head_null));
	{
		Datum		h = SPI_getbinval(SPI_tuptable->vals[0], SPI_tuptable->tupdesc, 2,
									  &head_null);

		if (!head_null && VARSIZE_ANY_EXHDR(DatumGetByteaPP(h)) == HISTORY_HASH_LEN)
		{
			memcpy(head_hash, VARDATA_ANY(DatumGetByteaPP(h)), HISTORY_HASH_LEN);
			head_hash_ok = true;
		}
	}

	if (SPI_execute_with_args("SELECT seq, from_state, to_state, at, session_role::text,"
							  " acting_role::text, application_name, reason, xid,"
							  " prev_hash, hash"
							  " FROM orderflow.order_events WHERE order_id = $1 ORDER BY seq",
							  1, argtypes, args, NULL, true, 0) != SPI_OK_SELECT)
		elog(ERROR, "history lookup failed");

	n = SPI_processed;
	for (uint64 i = 0; i < n && !broken; i++)
	{
		HeapTuple	tup = SPI_tuptable->vals[i];
		TupleDesc	desc = SPI_tuptable->tupdesc;
		bool		isnull;
		HistoryEvent ev;
		uint8		hash[HISTORY_HASH_LEN];
		MemoryContext old;

		memset(&ev, 0, sizeof(ev));
		ev.order_id = order_id;
		ev.seq = DatumGetInt32(SPI_getbinval(tup, desc, 1, &isnull));
		{
			Datum		f = SPI_getbinval(tup, desc, 2, &isnull);

			ev.from_state = isnull ? -1 : (int) DatumGetOrderState(f);
		}
		ev.to_state = (int) DatumGetOrderState(SPI_getbinval(tup, desc, 3, &isnull));
		ev.at = DatumGetTimestampTz(SPI_getbinval(tup, desc, 4, &isnull));
		ev.session_role = NullableText(tup, desc, 5);
		ev.acting_role = NullableText(tup, desc, 6);
		ev.application_name = NullableText(tup, desc, 7);
		ev.reason = NullableText(tup, desc, 8);
		ev.xid = U64FromFullTransactionId(DatumGetFullTransactionId(SPI_getbinval(tup, desc, 9, &isnull)));
		ev.prev_hash = have_prev ? prev : NULL;

		old = MemoryContextSwitchTo(per_query);
		if (ev.seq != expected_seq)
		{
			AddProblem(tupstore, result_desc, expected_seq,
					   psprintf("event %d is missing (found event %d next)",
								expected_seq, ev.seq));
			broken = true;
		}
		else if (ev.from_state != prev_to)
		{
			AddProblem(tupstore, result_desc, ev.seq,
					   psprintf("event %d starts from state %s, but the previous event ended in %s",
								ev.seq,
								ev.from_state < 0 ? "none" : OrderStateName((OrderState) ev.from_state),
								prev_to < 0 ? "none" : OrderStateName((OrderState) prev_to)));
			broken = true;
		}
		else if (!HashEquals(tup, desc, 10, ev.prev_hash))
		{
			AddProblem(tupstore, result_desc, ev.seq,
					   psprintf("event %d does not link to the hash of event %d",
								ev.seq, ev.seq - 1));
			broken = true;
		}
		MemoryContextSwitchTo(old);
		if (broken)
			break;

		HistoryEventHash(&ev, hash);
		if (!HashEquals(tup, desc, 11, hash))
		{
			old = MemoryContextSwitchTo(per_query);
			AddProblem(tupstore, result_desc, ev.seq,
					   psprintf("event %d was altered: its hash does not match its contents",
								ev.seq));
			MemoryContextSwitchTo(old);
			broken = true;
			break;
		}
		memcpy(prev, hash, HISTORY_HASH_LEN);
		have_prev = true;
		prev_to = ev.to_state;
		expected_seq++;
	}

	if (!broken)
	{
		/* The order row anchors the newest event: detect a cut-off tail. */
		MemoryContext old = MemoryContextSwitchTo(per_query);

		if (head_seq != expected_seq - 1)
			AddProblem(tupstore, result_desc, expected_seq,
					   psprintf("the order's newest event is %d, but the history ends at event %d",
								head_seq, expected_seq - 1));
		else if (have_prev != head_hash_ok ||
				 (have_prev && memcmp(prev, head_hash, HISTORY_HASH_LEN) != 0))
			AddProblem(tupstore, result_desc, head_seq,
					   psprintf("the order's history hash does not match event %d", head_seq));
		MemoryContextSwitchTo(old);
	}

	SPI_finish();
	return (Datum) 0;
}
