/*-------------------------------------------------------------------------
 *
 * transition.c
 *	  The transition graph, its backend-local cache, and the trigger that
 *	  validates every change of orders.state and records it in the audit
 *	  history.
 *
 * The allowed transitions live in orderflow.transitions and the states an
 * order may be created in live in orderflow.initial_states, so a DBA can
 * read and change them.  Each backend caches both as bit sets.  A statement
 * trigger on those tables sends a relcache invalidation for the table, and
 * the relcache callback here drops the cache, so every backend sees a change
 * from its next statement (the changing backend: from its next command).
 *
 * orderflow's own state changes (transition(), allocate()) go through
 * ChangeLockedOrder, which updates the row the caller has locked without an
 * UPDATE statement when row-level security does not apply to the caller,
 * applying the same privileges, triggers and constraints.
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include "access/htup_details.h"
#include "access/table.h"
#include "access/tableam.h"
#include "access/xact.h"
#include "catalog/namespace.h"
#include "catalog/pg_class.h"
#include "catalog/pg_type.h"
#include "commands/trigger.h"
#include "executor/executor.h"
#include "executor/spi.h"
#include "nodes/makefuncs.h"
#include "nodes/nodeFuncs.h"
#include "optimizer/optimizer.h"
#include "pgstat.h"
#include "rewrite/prs2lock.h"
#include "rewrite/rewriteManip.h"
#include "tcop/utility.h"
#include "miscadmin.h"
#include "utils/array.h"
#include "utils/builtins.h"
#include "utils/datum.h"
#include "utils/fmgroids.h"
#include "utils/guc.h"
#include "utils/hsearch.h"
#include "utils/memutils.h"
#include "utils/inval.h"
#include "utils/lsyscache.h"
#include "utils/rel.h"
#include "utils/rls.h"
#include "utils/syscache.h"
#include "utils/snapmgr.h"
#include "utils/timestamp.h"

#include "orderflow.h"

#define BIT(s)	((OrderStateSet) (1 << (s)))

typedef struct GraphCache
{
	bool		valid;
	Oid			transitions_relid;
	Oid			initial_relid;
	Oid			events_relid;
	Oid			events_owner;
	OrderStateSet next[OS_COUNT];
	OrderStateSet initial;
} GraphCache;

/* Column numbers of the orders table the trigger reads and stamps. */
typedef struct OrderColumns
{
	Oid			relid;			/* InvalidOid: not looked up yet */
	AttrNumber	id;
	AttrNumber	shop_id;
	AttrNumber	state;
	AttrNumber	state_changed_at;
	AttrNumber	paid_at;
	AttrNumber	history_seq;
	AttrNumber	history_hash;
} OrderColumns;

static GraphCache graph = {false};
static OrderColumns order_columns = {InvalidOid};
static bool callback_registered = false;
static uint64 cache_generation = 1;
static uint64 rules_generation = 1;

/* Further tables whose invalidation moves the cache generation. */
#define MAX_WATCHED 8
static Oid	watched[MAX_WATCHED];
static int	nwatched = 0;

/* Reason handed from orderflow.transition() to the trigger. */
static const char *pending_reason = NULL;
static int64 pending_reason_order = 0;

/*
 * Events the BEFORE trigger stamped, waiting for the AFTER trigger that
 * writes them once the row change has happened.  The AFTER triggers of a
 * statement run at its end, when the session's reason may have changed
 * (a statement can set it row by row), so the event is kept as stamped.
 * Lives in TopTransactionContext; forgotten at the end of the transaction.
 */
typedef struct StampedKey
{
	int64		order_id;
	int32		seq;
} StampedKey;

typedef struct StampedEvent
{
	StampedKey	key;
	HistoryEvent ev;
	uint8		prev_hash[HISTORY_HASH_LEN];
	uint8		hash[HISTORY_HASH_LEN];
} StampedEvent;

static HTAB *stamped_events = NULL;

static void
GraphInvalidate(Datum arg, Oid relid)
{
	if (relid == InvalidOid ||
		relid == graph.transitions_relid ||
		relid == graph.initial_relid ||
		relid == graph.events_relid)
	{
		graph.valid = false;
		cache_generation++;
	}
	if (relid == InvalidOid || relid == order_columns.relid)
	{
		order_columns.relid = InvalidOid;
		cache_generation++;
	}
	for (int i = 0; i < nwatched; i++)
		if (relid == watched[i])
			cache_generation++;
}

static void
ForgetStampedEvents(XactEvent event, void *arg)
{
	if (event == XACT_EVENT_COMMIT || event == XACT_EVENT_ABORT ||
		event == XACT_EVENT_PREPARE || event == XACT_EVENT_PARALLEL_COMMIT ||
		event == XACT_EVENT_PARALLEL_ABORT)
		stamped_events = NULL;	/* its memory goes with the transaction */
}

/*
 * A function, a role or a role's membership changed: the planned CHECK and
 * WHEN expressions of orders (SetOrderRules) may have inlined the function,
 * and their compiled forms were checked for the right to execute what they
 * call.  Nothing else needs rebuilding: saved plans follow function changes
 * by themselves, and check privileges when they run.
 */
static void
RulesInputsChanged(Datum arg, int cacheid, uint32 hashvalue)
{
	rules_generation++;
}

static void
EnsureCallback(void)
{
	if (!callback_registered)
	{
		CacheRegisterRelcacheCallback(GraphInvalidate, (Datum) 0);
		CacheRegisterSyscacheCallback(PROCOID, RulesInputsChanged, (Datum) 0);
		CacheRegisterSyscacheCallback(AUTHOID, RulesInputsChanged, (Datum) 0);
		CacheRegisterSyscacheCallback(AUTHMEMROLEMEM, RulesInputsChanged, (Datum) 0);
		RegisterXactCallback(ForgetStampedEvents, NULL);
		callback_registered = true;
	}
}

static char *
CopyString(const char *s)
{
	return s ? MemoryContextStrdup(TopTransactionContext, s) : NULL;
}

/* Keep an event stamped by the BEFORE trigger for the AFTER trigger. */
static void
KeepStampedEvent(const HistoryEvent *ev, const uint8 *hash)
{
	StampedKey	key;
	StampedEvent *se;
	bool		found;

	EnsureCallback();
	if (stamped_events == NULL)
	{
		HASHCTL		info;

		memset(&info, 0, sizeof(info));
		info.keysize = sizeof(StampedKey);
		info.entrysize = sizeof(StampedEvent);
		info.hcxt = TopTransactionContext;
		stamped_events = hash_create("orderflow stamped events", 64, &info,
									 HASH_ELEM | HASH_BLOBS | HASH_CONTEXT);
	}
	memset(&key, 0, sizeof(key));
	key.order_id = ev->order_id;
	key.seq = ev->seq;
	se = (StampedEvent *) hash_search(stamped_events, &key, HASH_ENTER, &found);
	se->ev = *ev;
	se->ev.session_role = CopyString(ev->session_role);
	se->ev.acting_role = CopyString(ev->acting_role);
	se->ev.application_name = CopyString(ev->application_name);
	se->ev.reason = CopyString(ev->reason);
	se->ev.prev_hash = NULL;
	if (ev->prev_hash)
	{
		memcpy(se->prev_hash, ev->prev_hash, HISTORY_HASH_LEN);
		se->ev.prev_hash = se->prev_hash;
	}
	memcpy(se->hash, hash, HISTORY_HASH_LEN);
}

/*
 * The OID of a relation in the orderflow schema.
 */
Oid
OrderflowRelid(const char *relname, bool missing_ok)
{
	Oid			nsp = get_namespace_oid("orderflow", missing_ok);
	Oid			relid = InvalidOid;

	if (OidIsValid(nsp))
		relid = get_relname_relid(relname, nsp);
	if (!OidIsValid(relid) && !missing_ok)
		ereport(ERROR,
				(errcode(ERRCODE_UNDEFINED_TABLE),
				 errmsg("relation \"orderflow.%s\" does not exist", relname),
				 errhint("Is the orderflow extension installed in this database?")));
	return relid;
}

static OrderStateSet
ReadStateSet(const char *query, int column, OrderStateSet *per_from)
{
	OrderStateSet set = 0;
	SPIPlanPtr	plan = SPI_prepare(query, 0, NULL);

	/*
	 * Read with a fresh snapshot: in a REPEATABLE READ transaction the
	 * transaction's snapshot may predate the change that invalidated the
	 * cache, and no second invalidation would come.
	 */
	if (plan == NULL ||
		SPI_execute_snapshot(plan, NULL, NULL, GetLatestSnapshot(),
							 InvalidSnapshot, true, false, 0) != SPI_OK_SELECT)
		elog(ERROR, "SPI query failed: %s", query);
	for (uint64 i = 0; i < SPI_processed; i++)
	{
		bool		isnull;
		Datum		d = SPI_getbinval(SPI_tuptable->vals[i], SPI_tuptable->tupdesc,
									  column, &isnull);
		OrderState	to;

		if (isnull)
			continue;
		to = DatumGetOrderState(d);
		if (per_from)
		{
			Datum		f = SPI_getbinval(SPI_tuptable->vals[i],
										  SPI_tuptable->tupdesc, 1, &isnull);

			if (!isnull)
				per_from[DatumGetOrderState(f)] |= BIT(to);
		}
		else
			set |= BIT(to);
	}
	return set;
}

/*
 * Make sure the cached graph is current.  The cache is marked valid before
 * it is read, so an invalidation that arrives while reading (SPI takes
 * locks, which processes invalidations) makes the next call read again.  A
 * read that fails (statement timeout or cancel while waiting for a lock on
 * the graph tables, out of memory) leaves the cache invalid: otherwise the
 * backend would keep an empty or outdated graph until the next change.
 */
static void
EnsureGraph(void)
{
	HeapTuple	tuple;
	OrderStateSet next[OS_COUNT] = {0};
	OrderStateSet initial;

	/*
	 * Take in graph changes other sessions committed.  Transaction start and
	 * the first lock on a relation do this too, but a statement inside a
	 * transaction block that takes no new lock (can_transition(), or an
	 * UPDATE of orders already locked) would otherwise keep using the graph
	 * of an earlier statement.  Cheap when there is nothing to process.
	 */
	AcceptInvalidationMessages();

	if (graph.valid)
		return;

	EnsureCallback();

	graph.transitions_relid = OrderflowRelid("transitions", false);
	graph.initial_relid = OrderflowRelid("initial_states", false);
	graph.events_relid = OrderflowRelid("order_events", false);
	graph.valid = true;

	PG_TRY();
	{
		if (SPI_connect() != SPI_OK_CONNECT)
			elog(ERROR, "SPI_connect failed");
		ReadStateSet("SELECT from_state, to_state FROM orderflow.transitions", 2, next);
		initial = ReadStateSet("SELECT state FROM orderflow.initial_states", 1, NULL);
		SPI_finish();

		tuple = SearchSysCache1(RELOID, ObjectIdGetDatum(graph.events_relid));
		if (!HeapTupleIsValid(tuple))
			elog(ERROR, "cache lookup failed for relation %u", graph.events_relid);
		graph.events_owner = ((Form_pg_class) GETSTRUCT(tuple))->relowner;
		ReleaseSysCache(tuple);
	}
	PG_CATCH();
	{
		graph.valid = false;
		PG_RE_THROW();
	}
	PG_END_TRY();

	memcpy(graph.next, next, sizeof(next));
	graph.initial = initial;
}

OrderStateSet
AllowedNextStates(OrderState from)
{
	EnsureGraph();
	return graph.next[from];
}

OrderStateSet
InitialStates(void)
{
	EnsureGraph();
	return graph.initial;
}

Oid
HistoryOwner(void)
{
	EnsureGraph();
	return graph.events_owner;
}

/*
 * Run as the extension's owner from here until RestoreUser, with row-level
 * security not forced: for reads and writes the extension makes on its own
 * tables whatever the caller may touch.  An error restores the user with
 * the rest of the (sub)transaction.
 */
void
BecomeExtensionOwner(SavedUser *saved)
{
	Oid			owner = HistoryOwner();

	GetUserIdAndSecContext(&saved->userid, &saved->sec_context);
	SetUserIdAndSecContext(owner, saved->sec_context |
						   SECURITY_LOCAL_USERID_CHANGE | SECURITY_NOFORCE_RLS);
}

void
RestoreUser(const SavedUser *saved)
{
	SetUserIdAndSecContext(saved->userid, saved->sec_context);
}

/*
 * Run a saved read-only plan as the extension's owner, for reads the caller
 * may rely on whatever it may read itself; at most count rows (0: all) are
 * left in SPI_tuptable.  With latest, the plan runs under a snapshot taken
 * now (also in a REPEATABLE READ transaction) that sees everything this
 * transaction wrote so far.  what names the query in the
 * error if it fails.
 */
void
ReadAsExtensionOwner(SPIPlanPtr plan, Datum *args, long count, bool latest,
					 const char *what)
{
	SavedUser	saved_user;
	int			ret;

	BecomeExtensionOwner(&saved_user);
	if (latest)
	{
		/*
		 * Rows this command wrote without a statement of their own (a hold
		 * written directly) are part of what the read must see.
		 */
		CommandCounterIncrement();
		ret = SPI_execute_snapshot(plan, args, NULL, GetLatestSnapshot(),
								   InvalidSnapshot, true, false, count);
	}
	else
		ret = SPI_execute_plan(plan, args, NULL, true, count);
	RestoreUser(&saved_user);
	if (ret != SPI_OK_SELECT)
		elog(ERROR, "%s query failed", what);
}

Oid
HistoryRelid(void)
{
	EnsureGraph();
	return graph.events_relid;
}

/*
 * A counter that moves whenever a table that saved plans depend on was
 * invalidated; a plan saved at an older value must be prepared again.
 */
uint64
OrderflowCacheGeneration(void)
{
	EnsureCallback();
	return cache_generation;
}

/*
 * Make changes to a table that a backend caches (their statement trigger
 * invalidates it, see orderflow.cache_changed) move the cache generation.
 */
void
OrderflowWatchRelation(Oid relid)
{
	EnsureCallback();
	for (int i = 0; i < nwatched; i++)
		if (watched[i] == relid)
			return;
	if (nwatched == MAX_WATCHED)
		memmove(watched, watched + 1, sizeof(Oid) * --nwatched);
	watched[nwatched++] = relid;
}

#define ORDERS_SHAPE "The order state trigger works only on a table shaped like orderflow.orders."

static void
EnsureColumns(Relation rel)
{
	if (order_columns.relid == RelationGetRelid(rel))
		return;
	EnsureCallback();
	order_columns.id = RequiredColumn(rel, "id", ORDERS_SHAPE);
	order_columns.shop_id = RequiredColumn(rel, "shop_id", ORDERS_SHAPE);
	order_columns.state = RequiredColumn(rel, "state", ORDERS_SHAPE);
	order_columns.state_changed_at = RequiredColumn(rel, "state_changed_at", ORDERS_SHAPE);
	order_columns.paid_at = RequiredColumn(rel, "paid_at", ORDERS_SHAPE);
	order_columns.history_seq = RequiredColumn(rel, "history_seq", ORDERS_SHAPE);
	order_columns.history_hash = RequiredColumn(rel, "history_hash", ORDERS_SHAPE);
	order_columns.relid = RelationGetRelid(rel);
}

static void
RaiseInvalidTransition(int64 order_id, int from, OrderState to)
{
	if (from < 0)
		ereport(ERROR,
				(errcode(ERRCODE_OF_INVALID_TRANSITION),
				 errmsg("an order cannot be created in state \"%s\"",
						OrderStateName(to)),
				 errdetail("Orders are created in one of: %s.",
						   OrderStateSetToString(InitialStates())),
				 errhint("See orderflow.initial_states.")));
	ereport(ERROR,
			(errcode(ERRCODE_OF_INVALID_TRANSITION),
			 errmsg("invalid order state transition from \"%s\" to \"%s\"",
					OrderStateName((OrderState) from), OrderStateName(to)),
			 errdetail("Order %lld may move from \"%s\" to: %s.",
					   (long long) order_id, OrderStateName((OrderState) from),
					   OrderStateSetToString(AllowedNextStates((OrderState) from))),
			 errhint("See orderflow.transitions.")));
}

/*
 * Refuse a change of a column the trigger maintains.
 */
static void
CheckUnchanged(HeapTuple oldtuple, HeapTuple newtuple, TupleDesc desc,
			   AttrNumber attnum)
{
	bool		oldnull,
				newnull;
	Datum		oldval = heap_getattr(oldtuple, attnum, desc, &oldnull);
	Datum		newval = heap_getattr(newtuple, attnum, desc, &newnull);
	Form_pg_attribute att = TupleDescAttr(desc, attnum - 1);

	if (oldnull == newnull &&
		(oldnull || datumIsEqual(oldval, newval, att->attbyval, att->attlen)))
		return;
	ereport(ERROR,
			(errcode(ERRCODE_OF_ORDER_IDENTITY),
			 errmsg("column \"%s\" of an order cannot be changed directly",
					NameStr(att->attname)),
			 errdetail("The order id, its shop and its history position are maintained by orderflow.")));
}

/*
 * Who, where from, why and in which transaction: the parts of an event that
 * come from the session.
 */
static void
SetEventContext(HistoryEvent *ev)
{
	ev->session_role = GetUserNameFromId(GetSessionUserId(), false);
	ev->acting_role = GetUserNameFromId(GetUserId(), false);
	ev->application_name = (application_name && application_name[0]) ? application_name : NULL;
	ev->reason = NULL;
	if (pending_reason != NULL && pending_reason_order == ev->order_id)
		ev->reason = pending_reason;
	else if (orderflow_reason != NULL && orderflow_reason[0] != '\0')
		ev->reason = orderflow_reason;
	ev->xid = U64FromFullTransactionId(GetTopFullTransactionId());
}

PG_FUNCTION_INFO_V1(order_state_transition_trigger);
Datum
order_state_transition_trigger(PG_FUNCTION_ARGS)
{
	TriggerData *trigdata = (TriggerData *) fcinfo->context;
	Relation	rel;
	TupleDesc	desc;
	HeapTuple	oldtuple = NULL;
	HeapTuple	newtuple;
	bool		isnull;
	int64		order_id;
	int			from = -1;
	OrderState	to;
	HistoryEvent ev;
	uint8		hash[HISTORY_HASH_LEN];
	bytea	   *hash_datum;
	int			cols[4];
	Datum		values[4];
	bool		nulls[4] = {false, false, false, false};
	int			ncols = 0;
	bool		paid_at_null;

	CheckTriggerCall(fcinfo, "order_state_transition_trigger", true, 1, &oldtuple, &newtuple);
	rel = trigdata->tg_relation;
	desc = RelationGetDescr(rel);
	EnsureColumns(rel);

	/* A NULL state is left to the NOT NULL constraint. */
	to = DatumGetOrderState(heap_getattr(newtuple, order_columns.state, desc, &isnull));
	if (isnull)
		return PointerGetDatum(newtuple);
	order_id = DatumGetInt64(heap_getattr(newtuple, order_columns.id, desc, &isnull));

	memset(&ev, 0, sizeof(ev));
	if (oldtuple != NULL)
	{
		Datum		seq;

		CheckUnchanged(oldtuple, newtuple, desc, order_columns.id);
		CheckUnchanged(oldtuple, newtuple, desc, order_columns.shop_id);
		CheckUnchanged(oldtuple, newtuple, desc, order_columns.history_seq);
		CheckUnchanged(oldtuple, newtuple, desc, order_columns.history_hash);

		from = DatumGetOrderState(heap_getattr(oldtuple, order_columns.state, desc, &isnull));
		if (isnull)
			from = -1;
		else if ((OrderState) from == to)
			return PointerGetDatum(newtuple);	/* not a transition */

		if (from < 0 || (AllowedNextStates((OrderState) from) & BIT(to)) == 0)
			RaiseInvalidTransition(order_id, from, to);

		seq = heap_getattr(oldtuple, order_columns.history_seq, desc, &isnull);
		ev.seq = (isnull ? 0 : DatumGetInt32(seq)) + 1;
		if (!heap_attisnull(oldtuple, order_columns.history_hash, desc))
		{
			bytea	   *prev = DatumGetByteaPP(heap_getattr(oldtuple,
															order_columns.history_hash,
															desc, &isnull));

			if (VARSIZE_ANY_EXHDR(prev) == HISTORY_HASH_LEN)
				ev.prev_hash = (const uint8 *) VARDATA_ANY(prev);
		}
	}
	else
	{
		if ((InitialStates() & BIT(to)) == 0)
			RaiseInvalidTransition(order_id, -1, to);
		ev.seq = 1;
	}

	ev.order_id = order_id;
	ev.from_state = from;
	ev.to_state = to;
	ev.at = GetCurrentTimestamp();
	SetEventContext(&ev);

	/*
	 * Stamp the new row with the event's position and hash; the AFTER trigger
	 * writes the event once the row change has really happened.
	 */
	HistoryEventHash(&ev, hash);
	KeepStampedEvent(&ev, hash);
	hash_datum = (bytea *) palloc(VARHDRSZ + HISTORY_HASH_LEN);
	SET_VARSIZE(hash_datum, VARHDRSZ + HISTORY_HASH_LEN);
	memcpy(VARDATA(hash_datum), hash, HISTORY_HASH_LEN);

	cols[ncols] = order_columns.state_changed_at;
	values[ncols++] = TimestampTzGetDatum(ev.at);
	cols[ncols] = order_columns.history_seq;
	values[ncols++] = Int32GetDatum(ev.seq);
	cols[ncols] = order_columns.history_hash;
	values[ncols++] = PointerGetDatum(hash_datum);
	(void) heap_getattr(newtuple, order_columns.paid_at, desc, &paid_at_null);
	if (to == OS_PAID && paid_at_null)
	{
		cols[ncols] = order_columns.paid_at;
		values[ncols++] = TimestampTzGetDatum(ev.at);
	}

	newtuple = heap_modify_tuple_by_cols(newtuple, desc, ncols, cols, values, nulls);
	return PointerGetDatum(newtuple);
}

/*
 * AFTER INSERT OR UPDATE trigger on orders: append the audit event of a
 * state change that really happened (an INSERT that ON CONFLICT skipped, or
 * a row another BEFORE trigger cancelled, leaves no event).  The event is
 * rebuilt from the old and new rows and the session, and must hash to what
 * the BEFORE trigger stamped on the row.
 */
PG_FUNCTION_INFO_V1(order_state_history_trigger);
Datum
order_state_history_trigger(PG_FUNCTION_ARGS)
{
	TriggerData *trigdata = (TriggerData *) fcinfo->context;
	HeapTuple	oldtuple;
	HeapTuple	newtuple;
	TupleDesc	desc;
	bool		isnull;
	StampedKey	key;
	StampedEvent *se = NULL;
	bytea	   *stamped;

	CheckTriggerCall(fcinfo, "order_state_history_trigger", false, 1, &oldtuple, &newtuple);
	desc = RelationGetDescr(trigdata->tg_relation);
	EnsureColumns(trigdata->tg_relation);

	memset(&key, 0, sizeof(key));
	key.order_id = DatumGetInt64(heap_getattr(newtuple, order_columns.id, desc, &isnull));
	key.seq = DatumGetInt32(heap_getattr(newtuple, order_columns.history_seq, desc, &isnull));
	if (oldtuple != NULL &&
		DatumGetInt32(heap_getattr(oldtuple, order_columns.history_seq, desc, &isnull)) == key.seq)
		return PointerGetDatum(NULL);	/* not a transition */

	/* The BEFORE trigger of the same statement stamped this event. */
	if (stamped_events != NULL)
		se = (StampedEvent *) hash_search(stamped_events, &key, HASH_FIND, NULL);
	stamped = DatumGetByteaPP(heap_getattr(newtuple, order_columns.history_hash, desc, &isnull));
	if (se == NULL || isnull || VARSIZE_ANY_EXHDR(stamped) != HISTORY_HASH_LEN ||
		memcmp(VARDATA_ANY(stamped), se->hash, HISTORY_HASH_LEN) != 0)
		ereport(ERROR,
				(errcode(ERRCODE_OF_HISTORY_IMMUTABLE),
				 errmsg("no audit event was stamped for event %d of order %lld",
						key.seq, (long long) key.order_id),
				 errdetail("The order state trigger must run before this one on every change of an order.")));

	HistoryAppend(&se->ev, se->hash);
	hash_search(stamped_events, &key, HASH_REMOVE, NULL);
	return PointerGetDatum(NULL);
}

/*
 * Statement trigger on tables that backends cache (the graph tables, bins,
 * lots): a relcache invalidation makes every backend reload.
 */
PG_FUNCTION_INFO_V1(orderflow_cache_changed_trigger);
Datum
orderflow_cache_changed_trigger(PG_FUNCTION_ARGS)
{
	TriggerData *trigdata = (TriggerData *) fcinfo->context;

	CheckTriggerCall(fcinfo, "orderflow_cache_changed_trigger", false, 0, NULL, NULL);
	CacheInvalidateRelcache(trigdata->tg_relation);
	return PointerGetDatum(NULL);
}

PG_FUNCTION_INFO_V1(order_can_transition);
Datum
order_can_transition(PG_FUNCTION_ARGS)
{
	OrderState	from = PG_GETARG_ORDER_STATE(0);
	OrderState	to = PG_GETARG_ORDER_STATE(1);

	PG_RETURN_BOOL((AllowedNextStates(from) & BIT(to)) != 0);
}

PG_FUNCTION_INFO_V1(order_next_states);
Datum
order_next_states(PG_FUNCTION_ARGS)
{
	OrderState	from = PG_GETARG_ORDER_STATE(0);
	OrderStateSet set = AllowedNextStates(from);
	Oid			typid = get_fn_expr_argtype(fcinfo->flinfo, 0);
	Datum		elems[OS_COUNT];
	int			n = 0;

	for (int s = 0; s < OS_COUNT; s++)
		if (set & BIT(s))
			elems[n++] = OrderStateGetDatum((OrderState) s);
	PG_RETURN_ARRAYTYPE_P(construct_array(elems, n, typid, 1, true, TYPALIGN_CHAR));
}

/*
 * orderflow.state_graph(): the state machine as Graphviz DOT.
 */
PG_FUNCTION_INFO_V1(order_state_graph);
Datum
order_state_graph(PG_FUNCTION_ARGS)
{
	StringInfoData buf;
	OrderStateSet initial = InitialStates();

	initStringInfo(&buf);
	appendStringInfoString(&buf,
						   "digraph order_state {\n"
						   "  rankdir=LR;\n"
						   "  node [shape=box, style=rounded, fontname=\"Noto Sans CJK SC,sans-serif\"];\n"
						   "  start [shape=point, label=\"\"];\n");
	for (int s = 0; s < OS_COUNT; s++)
		appendStringInfo(&buf, "  %s [label=\"%s\\n%s\"%s];\n",
						 OrderStateName((OrderState) s),
						 OrderStateName((OrderState) s),
						 OrderStateLabel((OrderState) s, true),
						 AllowedNextStates((OrderState) s) == 0 ? ", peripheries=2" : "");
	for (int s = 0; s < OS_COUNT; s++)
		if (initial & BIT(s))
			appendStringInfo(&buf, "  start -> %s;\n", OrderStateName((OrderState) s));
	for (int f = 0; f < OS_COUNT; f++)
		for (int t = 0; t < OS_COUNT; t++)
			if (AllowedNextStates((OrderState) f) & BIT(t))
				appendStringInfo(&buf, "  %s -> %s%s;\n",
								 OrderStateName((OrderState) f),
								 OrderStateName((OrderState) t),
								 t == OS_CANCELLED ? " [style=dashed, color=gray50]" : "");
	appendStringInfoString(&buf, "}\n");
	PG_RETURN_TEXT_P(cstring_to_text_with_len(buf.data, buf.len));
}

/*
 * The statements of the general path of ChangeLockedOrder, in a connected
 * SPI session: state only, or state and allocation policy.  Like every
 * saved plan of orderflow they are prepared once and kept: the plan cache
 * follows the objects they name (the state travels as text, so no type OID
 * is fixed in them), and no plan is freed while a nested call may run it.
 */
static SPIPlanPtr
OrderUpdatePlan(bool with_policy)
{
	static SPIPlanPtr plans[2] = {NULL, NULL};
	Oid			argtypes[3] = {INT8OID, TEXTOID, TEXTOID};

	if (plans[with_policy] == NULL)
		plans[with_policy] =
			PrepareKeptPlan(with_policy ?
							"UPDATE orderflow.orders"
							"   SET state = $2::orderflow.order_state, allocation_policy = $3"
							" WHERE id OPERATOR(pg_catalog.=) $1" :
							"UPDATE orderflow.orders SET state = $2::orderflow.order_state"
							" WHERE id OPERATOR(pg_catalog.=) $1",
							with_policy ? 3 : 2, argtypes);
	return plans[with_policy];
}

/*
 * The CHECK constraints and trigger WHEN conditions of orders, read from
 * the catalogs and planned once per backend for the fast path of
 * ChangeLockedOrder (an UPDATE statement parses and plans them again for
 * every statement).  Rebuilt after any change to the table (the cache
 * generation moves), to a function, a role or a role membership
 * (rules_generation moves), for another user, and when track_functions
 * changes.
 *
 * Their executable forms are compiled once too, and serve every update
 * that runs alone, when the trees hold only nodes whose compiled form keeps
 * nothing of the executor state that first evaluated it (RulesReusable).
 * An update nested in another one (a CHECK's function moved an order, say)
 * may run while the outer one evaluates them, so it compiles its own, in
 * its executor state, as the executor would; so does every update when the
 * trees hold other nodes.  Compiled forms keep pointers into the trees, so
 * trees replaced while an update runs (a nested one rebuilt them) are kept
 * until no update runs.  The kept compiled forms are dropped when an error
 * interrupts the update using them: a function they call may have been
 * stopped halfway (a SQL function's running query, say), and a savepoint
 * may let the transaction go on.
 */
typedef struct OrderRuleCache
{
	uint64		generation;		/* 0: not built */
	uint64		rules;			/* rules_generation when built */
	MemoryContext cxt;
	int			ncheck;
	Expr	  **checks;			/* in table order */
	int			ntrig;
	List	  **whens;			/* by trigger position; NIL: no WHEN */
	Oid			user;			/* user they were planned for */
	int			track_functions;	/* track_functions when built */
	bool		reusable;		/* compiled forms may outlive an update */
	MemoryContext states_cxt;	/* child of cxt holding the kept compiled */
	ExprState **check_states;	/* forms (NULL until first compiled) */
	ExprState **when_states;
} OrderRuleCache;

static OrderRuleCache order_rules;
static int	order_rules_in_use = 0; /* direct updates running */
static List *retired_rules = NIL;	/* contexts of replaced trees */
static bool kept_rules_running = false; /* an update uses the kept forms */

/* One more direct update uses the planned trees. */
static void
OrderRulesAcquire(void)
{
	order_rules_in_use++;
}

/*
 * One direct update less; with none left, replaced trees are freed.  When
 * the update that used the kept compiled forms did not finish (an error
 * interrupts it), they are dropped.
 */
static void
OrderRulesRelease(void)
{
	Assert(order_rules_in_use > 0);
	if (order_rules_in_use == 1 && kept_rules_running)
	{
		kept_rules_running = false;
		if (order_rules.states_cxt != NULL)
			MemoryContextDelete(order_rules.states_cxt);
		order_rules.states_cxt = NULL;
		order_rules.check_states = NULL;
		order_rules.when_states = NULL;
	}
	if (--order_rules_in_use > 0)
		return;
	while (retired_rules != NIL)
	{
		MemoryContext cxt = (MemoryContext) linitial(retired_rules);

		retired_rules = list_delete_first(retired_rules);
		MemoryContextDelete(cxt);
	}
}

/*
 * Whether a compiled form of the node can serve any number of evaluations,
 * in any executor state.  Only node types known to keep nothing of the
 * state they were first evaluated in are accepted: whole-row variables and
 * row-type conversions, say, keep memory of that state, and domain checks
 * would not follow changes to the domain.
 */
static bool
RuleNodeUnsafe(Node *node, void *context)
{
	if (node == NULL)
		return false;
	switch (nodeTag(node))
	{
		case T_Var:
			if (((Var *) node)->varattno <= 0)
				return true;
			break;
		case T_ScalarArrayOpExpr:
			if (OidIsValid(((ScalarArrayOpExpr *) node)->hashfuncid))
				return true;
			break;
		case T_NullTest:
			if (((NullTest *) node)->argisrow)
				return true;
			break;
		case T_Const:
		case T_FuncExpr:
		case T_OpExpr:
		case T_DistinctExpr:
		case T_NullIfExpr:
		case T_BoolExpr:
		case T_BooleanTest:
		case T_RelabelType:
		case T_CoerceViaIO:
		case T_CaseExpr:
		case T_CaseWhen:
		case T_CaseTestExpr:
		case T_CoalesceExpr:
		case T_MinMaxExpr:
		case T_ArrayExpr:
		case T_List:
			break;
		default:
			return true;
	}
	return expression_tree_walker(node, RuleNodeUnsafe, context);
}

/* Whether every planned tree of order_rules passes RuleNodeUnsafe. */
static bool
RulesReusable(void)
{
	for (int i = 0; i < order_rules.ncheck; i++)
		if (RuleNodeUnsafe((Node *) order_rules.checks[i], NULL))
			return false;
	for (int i = 0; i < order_rules.ntrig; i++)
		if (RuleNodeUnsafe((Node *) order_rules.whens[i], NULL))
			return false;
	return true;
}

/*
 * Compile the planned trees of order_rules into checks (one per CHECK
 * constraint) and whens (one per trigger; left alone for a trigger with no
 * WHEN), in the current memory context.
 */
static void
CompileOrderRules(ExprState **checks, ExprState **whens)
{
	for (int i = 0; i < order_rules.ncheck; i++)
		checks[i] = ExecInitExpr(order_rules.checks[i], NULL);
	for (int i = 0; i < order_rules.ntrig; i++)
		if (order_rules.whens[i] != NIL)
			whens[i] = ExecInitQual(order_rules.whens[i], NULL);
}

/*
 * Give rri the compiled CHECK expressions and trigger WHEN conditions of
 * its table, in the places where the executor would compile its own.
 */
static void
SetOrderRules(ResultRelInfo *rri, EState *estate)
{
	Relation	rel = rri->ri_RelationDesc;
	TupleConstr *constr = RelationGetDescr(rel)->constr;

	/*
	 * The executor's copy of the triggers: the relation cache's own may be
	 * rebuilt by an invalidation that planning below takes in.
	 */
	TriggerDesc *trigdesc = rri->ri_TrigDesc;
	int			ncheck = constr != NULL ? constr->num_check : 0;
	int			ntrig = trigdesc != NULL ? trigdesc->numtriggers : 0;
	MemoryContext old;

	if (order_rules.generation != OrderflowCacheGeneration() ||
		order_rules.rules != rules_generation ||
		order_rules.ncheck != ncheck || order_rules.ntrig != ntrig ||
		order_rules.user != GetUserId() ||
		order_rules.track_functions != pgstat_track_functions)
	{
		/* Invalidations that arrive while building make it stale again. */
		uint64		generation = OrderflowCacheGeneration();
		uint64		rules = rules_generation;
		MemoryContext cxt;
		Expr	  **checks;
		List	  **whens;

		/*
		 * Built apart and installed only when complete: planning may run
		 * functions (constant folding), and through them a nested update that
		 * installs rules of its own; an error leaves nothing behind.
		 */
		cxt = AllocSetContextCreate(CurrentMemoryContext,
									"orderflow order rules",
									ALLOCSET_SMALL_SIZES);
		old = MemoryContextSwitchTo(cxt);
		checks = palloc0(sizeof(Expr *) * Max(ncheck, 1));
		for (int i = 0; i < ncheck; i++)
			checks[i] = expression_planner(stringToNode(constr->check[i].ccbin));
		whens = palloc0(sizeof(List *) * Max(ntrig, 1));
		for (int i = 0; i < ntrig; i++)
		{
			Node	   *qual;

			if (trigdesc->triggers[i].tgqual == NULL)
				continue;
			/* OLD is the inner tuple of a WHEN condition, NEW the outer. */
			qual = stringToNode(trigdesc->triggers[i].tgqual);
			ChangeVarNodes(qual, PRS2_OLD_VARNO, INNER_VAR, 0);
			ChangeVarNodes(qual, PRS2_NEW_VARNO, OUTER_VAR, 0);
			whens[i] = make_ands_implicit(expression_planner((Expr *) qual));
		}
		MemoryContextSwitchTo(old);

		if (order_rules.cxt != NULL)
		{
			if (order_rules_in_use > 1)
			{
				/*
				 * An outer update compiled from them: keep them until it
				 * ends.
				 */
				MemoryContext old_cxt = MemoryContextSwitchTo(CacheMemoryContext);

				retired_rules = lappend(retired_rules, order_rules.cxt);
				MemoryContextSwitchTo(old_cxt);
			}
			else
				MemoryContextDelete(order_rules.cxt);
		}
		MemoryContextSetParent(cxt, CacheMemoryContext);
		order_rules.cxt = cxt;
		order_rules.states_cxt = NULL;	/* deleted or retired with its parent */
		order_rules.check_states = NULL;
		order_rules.when_states = NULL;
		order_rules.checks = checks;
		order_rules.whens = whens;
		order_rules.ncheck = ncheck;
		order_rules.ntrig = ntrig;
		order_rules.user = GetUserId();
		order_rules.track_functions = pgstat_track_functions;
		order_rules.reusable = RulesReusable();
		order_rules.generation = generation;
		order_rules.rules = rules;
	}

	if (order_rules.reusable && order_rules_in_use == 1)
	{
		/*
		 * The only update running: the kept compiled forms serve it.  They
		 * are compiled in a context of this update's, which joins the cache
		 * once all is compiled (compiling checks the right to execute each
		 * function called, and may fail).
		 */
		if (order_rules.check_states == NULL)
		{
			MemoryContext states = AllocSetContextCreate(estate->es_query_cxt,
														 "orderflow compiled order rules",
														 ALLOCSET_SMALL_SIZES);
			ExprState **checks;
			ExprState **whens;

			old = MemoryContextSwitchTo(states);
			checks = palloc0(sizeof(ExprState *) * Max(ncheck, 1));
			whens = palloc0(sizeof(ExprState *) * Max(ntrig, 1));
			CompileOrderRules(checks, whens);
			MemoryContextSwitchTo(old);
			MemoryContextSetParent(states, order_rules.cxt);
			order_rules.states_cxt = states;
			order_rules.when_states = whens;
			order_rules.check_states = checks;
		}
		if (ncheck > 0)
			rri->ri_ConstraintExprs = order_rules.check_states;
		if (ntrig > 0)
			memcpy(rri->ri_TrigWhenExprs, order_rules.when_states,
				   sizeof(ExprState *) * ntrig);
		kept_rules_running = true;
		return;
	}

	old = MemoryContextSwitchTo(estate->es_query_cxt);
	if (ncheck > 0)
		rri->ri_ConstraintExprs = palloc0(sizeof(ExprState *) * ncheck);
	CompileOrderRules(rri->ri_ConstraintExprs, rri->ri_TrigWhenExprs);
	MemoryContextSwitchTo(old);
}

/*
 * The range table entry of orders for a statement with the given lock mode
 * and permissions that reads the columns selected and sets the columns
 * updated (attribute numbers), checked against the caller's privileges as
 * the statement's executor start would check it.
 */
static RangeTblEntry *
CheckedOrderRte(Relation rel, LOCKMODE lockmode, AclMode perms,
				int nselected, const AttrNumber *selected,
				int nupdated, const AttrNumber *updated)
{
	RangeTblEntry *rte = makeNode(RangeTblEntry);

	rte->rtekind = RTE_RELATION;
	rte->relid = RelationGetRelid(rel);
	rte->relkind = rel->rd_rel->relkind;
	rte->rellockmode = lockmode;
	rte->requiredPerms = perms;
	for (int i = 0; i < nselected; i++)
		rte->selectedCols = bms_add_member(rte->selectedCols,
										   selected[i] - FirstLowInvalidHeapAttributeNumber);
	for (int i = 0; i < nupdated; i++)
		rte->updatedCols = bms_add_member(rte->updatedCols,
										  updated[i] - FirstLowInvalidHeapAttributeNumber);
	ExecCheckRTPerms(list_make1(rte), true);
	return rte;
}

/* Keep the TID of the first row an index scan finds. */
static bool
KeepTid(TupleTableSlot *slot, void *arg)
{
	*(ItemPointer) arg = slot->tts_tid;
	return false;
}

/*
 * The fast path of ChangeLockedOrder: the row update an UPDATE statement
 * would make, without planning or starting an executor for one row.  The
 * caller's privileges are checked as the statement would check them, and
 * every trigger, constraint and index of the table is applied: BEFORE row
 * triggers, CHECK and NOT NULL constraints, index entries, AFTER row
 * triggers (deferred ones queued for commit), with the set columns named
 * for UPDATE OF triggers.
 */
static void
DirectOrderUpdate(Relation rel, int64 order_id, ItemPointer locked,
				  OrderState to, const char *policy)
{
	TupleDesc	desc = RelationGetDescr(rel);
	RangeTblEntry *rte;
	EState	   *estate;
	ResultRelInfo *rri;
	EPQState	epqstate;
	TupleTableSlot *oldslot;
	TupleTableSlot *newslot;
	AttrNumber	set[2];
	ItemPointerData tid = *locked;
	TableScanDesc scan;

	PreventCommandIfReadOnly("UPDATE");
	EnsureColumns(rel);
	set[0] = order_columns.state;
	if (policy != NULL)
		set[1] = RequiredColumn(rel, "allocation_policy", ORDERS_SHAPE);
	rte = CheckedOrderRte(rel, RowExclusiveLock, ACL_SELECT | ACL_UPDATE,
						  1, &order_columns.id, policy != NULL ? 2 : 1, set);

	/* Changes this transaction made so far are visible to the triggers. */
	CommandCounterIncrement();
	PushActiveSnapshot(GetTransactionSnapshot());

	estate = CreateExecutorState();
	ExecInitRangeTable(estate, list_make1(rte));
	estate->es_output_cid = GetCurrentCommandId(true);
	estate->es_snapshot = GetActiveSnapshot();
	rri = makeNode(ResultRelInfo);
	InitResultRelInfo(rri, rel, 1, NULL, 0);
	SetOrderRules(rri, estate);
	ExecOpenIndices(rri, false);
	/* The AFTER triggers find it there rather than opening their own. */
	estate->es_opened_result_relations = list_make1(rri);
	EvalPlanQualInit(&epqstate, estate, NULL, NIL, -1);

	/*
	 * The row as this transaction sees it now: the version it locked, or a
	 * later one it made itself (a line cancelled on the way, say), found
	 * along the chain of versions from the locked one.
	 */
	oldslot = ExecInitExtraTupleSlot(estate, desc, table_slot_callbacks(rel));
	newslot = ExecInitExtraTupleSlot(estate, desc, &TTSOpsVirtual);
	scan = table_beginscan_tid(rel, estate->es_snapshot);
	table_tuple_get_latest_tid(scan, &tid);
	table_endscan(scan);
	if (!table_tuple_fetch_row_version(rel, &tid, estate->es_snapshot, oldslot))
		ExecClearTuple(oldslot);
	if (TupIsNull(oldslot))
		ereport(ERROR,
				(errcode(ERRCODE_OF_ORDER_NOT_FOUND),
				 errmsg("order %lld does not exist", (long long) order_id),
				 errdetail("It was deleted after it was locked.")));
	slot_getallattrs(oldslot);
	ExecClearTuple(newslot);
	memcpy(newslot->tts_values, oldslot->tts_values, sizeof(Datum) * desc->natts);
	memcpy(newslot->tts_isnull, oldslot->tts_isnull, sizeof(bool) * desc->natts);
	newslot->tts_values[order_columns.state - 1] = OrderStateGetDatum(to);
	newslot->tts_isnull[order_columns.state - 1] = false;
	if (policy != NULL)
	{
		newslot->tts_values[set[1] - 1] = CStringGetTextDatum(policy);
		newslot->tts_isnull[set[1] - 1] = false;
	}
	ExecStoreVirtualTuple(newslot);

	AfterTriggerBeginQuery();
	ExecSimpleRelationUpdate(rri, estate, &epqstate, oldslot, newslot);
	AfterTriggerEndQuery(estate);
	if (order_rules_in_use == 1)
		kept_rules_running = false; /* evaluated to the end */

	EvalPlanQualEnd(&epqstate);
	ExecCloseResultRelations(estate);
	ExecResetTupleTable(estate->es_tupleTable, false);
	FreeExecutorState(estate);
	PopActiveSnapshot();
	CommandCounterIncrement();
}

/*
 * Whether an order's row may be read and locked directly, as a statement
 * run by the caller would: not when row-level security applies to the
 * caller (the statement applies its policies), nor when orders is not a
 * plain table or other tables inherit from it (a statement also finds
 * orders stored in them).
 */
static bool
DirectRowApplies(Relation rel)
{
	if (check_enable_rls(RelationGetRelid(rel), InvalidOid, false) == RLS_ENABLED)
		return false;
	return rel->rd_rel->relkind == RELKIND_RELATION && !rel->rd_rel->relhassubclass;
}

/*
 * Whether ChangeLockedOrder may update the row it locked directly (a row
 * LockOrderRow could lock directly): when orders has no statement triggers
 * or transition tables for UPDATE (only a statement fires them) and no
 * rules on UPDATE (only a statement is rewritten).
 */
static bool
DirectUpdateApplies(Relation rel)
{
	TriggerDesc *trigdesc = rel->trigdesc;

	if (rel->rd_rules != NULL)
		for (int i = 0; i < rel->rd_rules->numLocks; i++)
			if (rel->rd_rules->rules[i]->event == CMD_UPDATE)
				return false;
	return trigdesc == NULL ||
		!(trigdesc->trig_update_before_statement ||
		  trigdesc->trig_update_after_statement ||
		  trigdesc->trig_update_old_table ||
		  trigdesc->trig_update_new_table);
}

/*
 * Lock the row of order order_id as SELECT ... FOR UPDATE (mode
 * LockTupleExclusive) or FOR NO KEY UPDATE (LockTupleNoKeyExclusive) run
 * now by the caller would: with the caller's privileges (SELECT on id and
 * cols, UPDATE on some column), a new snapshot, waiting for a transaction
 * that holds a conflicting lock, then, in READ COMMITTED, locking the
 * version it left, and in REPEATABLE READ or SERIALIZABLE failing with a
 * serialization error if it changed the row.  rel is orders, opened with
 * RowShareLock.  The values of cols are returned, copied, in values and
 * isnull, and the locked version's TID in tid.
 *
 * When only the statement applies everything (DirectRowApplies), the
 * statement is run instead: statement, in the caller's SPI session, takes
 * the order id and selects the values of cols in their order; tid is then
 * invalid.
 */
void
LockOrderRow(Relation rel, int64 order_id, LockTupleMode mode, int ncols,
			 const AttrNumber *cols, Datum *values, bool *isnull, ItemPointer tid,
			 SPIPlanPtr statement)
{
	TupleDesc	desc = RelationGetDescr(rel);
	ItemPointerData found;
	Snapshot	snapshot;
	TupleTableSlot *slot;
	AttrNumber *read;
	bool		locked = false;

	ItemPointerSetInvalid(tid);
	if (!DirectRowApplies(rel))
	{
		Datum		args[1] = {Int64GetDatum(order_id)};

		if (SPI_execute_plan(statement, args, NULL, false, 1) != SPI_OK_SELECT)
			elog(ERROR, "order lock query failed");
		if (SPI_processed == 0)
			ereport(ERROR,
					(errcode(ERRCODE_OF_ORDER_NOT_FOUND),
					 errmsg("order %lld does not exist", (long long) order_id)));
		for (int i = 0; i < ncols; i++)
			values[i] = SPI_getbinval(SPI_tuptable->vals[0], SPI_tuptable->tupdesc,
									  i + 1, &isnull[i]);
		return;
	}
	/* As the statement's executor start would refuse it. */
	PreventCommandIfReadOnly(mode == LockTupleExclusive ? "SELECT FOR UPDATE" :
							 "SELECT FOR NO KEY UPDATE");
	EnsureColumns(rel);
	read = palloc(sizeof(AttrNumber) * (ncols + 1));
	read[0] = order_columns.id;
	memcpy(read + 1, cols, sizeof(AttrNumber) * ncols);
	(void) CheckedOrderRte(rel, RowShareLock, ACL_SELECT | ACL_SELECT_FOR_UPDATE,
						   ncols + 1, read, 0, NULL);

	CommandCounterIncrement();
	snapshot = RegisterSnapshot(GetTransactionSnapshot());
	ItemPointerSetInvalid(&found);
	IndexScanEqual(RelationGetRelid(rel), RelationGetPrimaryKeyIndex(rel), F_INT8EQ,
				   Int64GetDatum(order_id), snapshot, KeepTid, &found);
	slot = table_slot_create(rel, NULL);
	if (ItemPointerIsValid(&found))
	{
		TM_FailureData tmfd;
		TM_Result	result;

		result = table_tuple_lock(rel, &found, snapshot, slot, GetCurrentCommandId(true),
								  mode, LockWaitBlock,
								  IsolationUsesXactSnapshot() ? 0 : TUPLE_LOCK_FLAG_FIND_LAST_VERSION,
								  &tmfd);
		switch (result)
		{
			case TM_Ok:
				/* A later version is the order's while its id is. */
				locked = true;
				if (tmfd.traversed)
				{
					bool		null;
					Datum		id = slot_getattr(slot, order_columns.id, &null);

					locked = !null && DatumGetInt64(id) == order_id;
				}
				break;
			case TM_SelfModified:
				/* Changed by a later command of this transaction: skipped. */
				break;
			case TM_Updated:
			case TM_Deleted:
				if (IsolationUsesXactSnapshot())
					ereport(ERROR,
							(errcode(ERRCODE_T_R_SERIALIZATION_FAILURE),
							 errmsg("could not serialize access due to concurrent update")));
				if (result == TM_Updated)
					elog(ERROR, "unexpected result of locking order %lld", (long long) order_id);
				/* Deleted meanwhile: not there. */
				break;
			default:
				elog(ERROR, "unexpected result %d of locking order %lld",
					 (int) result, (long long) order_id);
		}
	}
	if (!locked)
		ereport(ERROR,
				(errcode(ERRCODE_OF_ORDER_NOT_FOUND),
				 errmsg("order %lld does not exist", (long long) order_id)));

	for (int i = 0; i < ncols; i++)
	{
		Form_pg_attribute att = TupleDescAttr(desc, cols[i] - 1);

		values[i] = slot_getattr(slot, cols[i], &isnull[i]);
		if (!isnull[i])
			values[i] = datumCopy(values[i], att->attbyval, att->attlen);
	}
	*tid = slot->tts_tid;
	ExecDropSingleTupleTableSlot(slot);
	UnregisterSnapshot(snapshot);
}

/*
 * Move an order this transaction has locked to the state to, and set its
 * allocation policy when one is given.  locked is the TID LockOrderRow
 * returned: the version it locked, or invalid when a statement locked it.
 * The change is recorded with the given reason, or with the session's
 * orderflow.reason when that is NULL.  The row is updated directly, or by
 * an UPDATE statement in the caller's SPI session when it was locked by a
 * statement or only a statement applies everything (see
 * DirectUpdateApplies).
 */
void
ChangeLockedOrder(int64 order_id, ItemPointer locked, OrderState to,
				  const char *policy, const char *reason)
{
	const char *outer_reason = pending_reason;
	int64		outer_order = pending_reason_order;
	Relation	rel = table_open(OrderflowRelid("orders", false), RowExclusiveLock);
	volatile bool direct = false;

	pending_reason = reason;
	pending_reason_order = order_id;
	PG_TRY();
	{
		if (!ItemPointerIsValid(locked) || !DirectUpdateApplies(rel))
		{
			Datum		args[3];

			args[0] = Int64GetDatum(order_id);
			args[1] = CStringGetTextDatum(OrderStateName(to));
			args[2] = policy != NULL ? CStringGetTextDatum(policy) : (Datum) 0;
			if (SPI_execute_plan(OrderUpdatePlan(policy != NULL), args, NULL, false, 0) != SPI_OK_UPDATE)
				elog(ERROR, "order update failed");
		}
		else
		{
			direct = true;
			OrderRulesAcquire();
			DirectOrderUpdate(rel, order_id, locked, to, policy);
		}
	}
	PG_FINALLY();
	{
		/* An update run by a trigger of another one leaves it its reason. */
		pending_reason = outer_reason;
		pending_reason_order = outer_order;
		if (direct)
			OrderRulesRelease();
	}
	PG_END_TRY();
	table_close(rel, NoLock);
}

/*
 * orderflow.transition(order_id, to_state, reason, expected): lock the
 * order, check it is in the expected state if one is given, and move it.
 * Returns the state the order left (or its unchanged state when it already
 * was in to_state).  The trigger validates and records the change.
 */
PG_FUNCTION_INFO_V1(order_transition);
Datum
order_transition(PG_FUNCTION_ARGS)
{
	static SPIPlanPtr lock_plan = NULL;
	int64		order_id;
	OrderState	to;
	OrderState	current;
	Relation	rel;
	Datum		value;
	bool		isnull;
	ItemPointerData tid;

	if (PG_ARGISNULL(0) || PG_ARGISNULL(1))
		ereport(ERROR,
				(errcode(ERRCODE_NULL_VALUE_NOT_ALLOWED),
				 errmsg("order id and target state must not be null")));
	order_id = PG_GETARG_INT64(0);
	to = PG_GETARG_ORDER_STATE(1);

	if (SPI_connect() != SPI_OK_CONNECT)
		elog(ERROR, "SPI_connect failed");

	if (lock_plan == NULL)
	{
		Oid			argtypes[1] = {INT8OID};

		lock_plan = PrepareKeptPlan("SELECT state FROM orderflow.orders"
									" WHERE id OPERATOR(pg_catalog.=) $1 FOR UPDATE",
									1, argtypes);
	}

	/* The order, locked: directly, or by the statement when only it applies. */
	rel = table_open(OrderflowRelid("orders", false), RowShareLock);
	EnsureColumns(rel);
	LockOrderRow(rel, order_id, LockTupleExclusive, 1, &order_columns.state,
				 &value, &isnull, &tid, lock_plan);
	table_close(rel, NoLock);
	current = DatumGetOrderState(value);

	if (!PG_ARGISNULL(3) && PG_GETARG_ORDER_STATE(3) != current)
		ereport(ERROR,
				(errcode(ERRCODE_OF_STATE_MISMATCH),
				 errmsg("order %lld is in state \"%s\", not \"%s\"",
						(long long) order_id, OrderStateName(current),
						OrderStateName(PG_GETARG_ORDER_STATE(3))),
				 errdetail("Another transaction may have moved the order first.")));

	if (current != to)
		ChangeLockedOrder(order_id, &tid, to, NULL,
						  PG_ARGISNULL(2) ? NULL : text_to_cstring(PG_GETARG_TEXT_PP(2)));

	SPI_finish();
	PG_RETURN_ORDER_STATE(current);
}
