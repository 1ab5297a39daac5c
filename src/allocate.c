/*-------------------------------------------------------------------------
 *
 * allocate.c
 *	  orderflow.allocate(): stock for every line of an order.
 *
 * One call locks the order, reads its lines with what they already hold,
 * claims the holds placed at checkout under the order's platform number,
 * then takes the rest from the escrow counters: from one warehouse that
 * can ship everything if there is one (fewest parcels), else line by line
 * in warehouse priority order.  Every take is planned on bins and lots
 * first expiry first out.  The policy decides what happens when stock is
 * missing:
 *
 *	 wait			all or nothing: what this call took goes back, the order
 *					waits (backordered);
 *	 split			ship what is there (only with the buyer's or the shop's
 *					consent, else as wait);
 *	 cancel_missing cancel the missing units and refund them.
 *
 * The planned holds are written with one INSERT and the order moves with
 * one UPDATE, validated and audited by the state trigger.
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include "catalog/namespace.h"
#include "catalog/pg_type.h"
#include "executor/spi.h"
#include "funcapi.h"
#include "utils/array.h"
#include "utils/builtins.h"
#include "utils/syscache.h"
#include "utils/tuplestore.h"

#include "orderflow.h"
#include "allocator.h"

typedef enum AllocationPolicy
{
	POLICY_WAIT,
	POLICY_SPLIT,
	POLICY_CANCEL_MISSING
} AllocationPolicy;

static const char *const policy_names[] = {"wait", "split", "cancel_missing"};

/* One line of the order being allocated. */
typedef struct AllocLine
{
	int32		line_no;
	char	   *sku;			/* NULL: not mapped to one of our SKUs */
	int32		requested;		/* ordered minus cancelled */
	int32		got;			/* held or shipped */
	int32		need;			/* still missing */
	StringInfoData where;		/* "claimed", or the warehouses it came from */
} AllocLine;

/* The locked order. */
typedef struct AllocOrder
{
	int64		id;
	OrderState	state;
	char	   *stored_policy;	/* NULL when none was stored */
	bool		consent;		/* may ship in several parcels */
	char	   *order_no;
	bool		has_checkout_holds;
	int			nwarehouses;
	char	  **warehouses;		/* active, by priority */
} AllocOrder;

static SPIPlanPtr order_plan = NULL;
static SPIPlanPtr lines_plan = NULL;
static SPIPlanPtr cancel_plan = NULL;
static SPIPlanPtr update_plan = NULL;
static uint64 plan_generation = 0;

/*
 * Changes to what an order owes or holds once it is approved (cancelled
 * quantities, substitution lines, refund records, amounts) are made only by
 * orderflow's stock functions: the guard triggers of those tables refuse
 * them (OF012) unless orderflow.trusted_write() is true, and it is true
 * only while cancel_line, substitute_line or allocate's cancellation of
 * missing units runs in this backend.  SQL cannot set it.
 */
static int	trusted_depth = 0;

static void
TrustedWritesBegin(void)
{
	trusted_depth++;
}

static void
TrustedWritesEnd(void)
{
	Assert(trusted_depth > 0);
	trusted_depth--;
}

/* Run cancel_plan with args, trusted writes on while it runs. */
static void
CancelUnitsTrusted(Datum *args)
{
	TrustedWritesBegin();
	PG_TRY();
	{
		if (SPI_execute_plan(cancel_plan, args, NULL, false, 0) != SPI_OK_SELECT)
			elog(ERROR, "could not cancel missing units");
	}
	PG_FINALLY();
	{
		TrustedWritesEnd();
	}
	PG_END_TRY();
}

static SPIPlanPtr
Prepare(const char *sql, int nargs, Oid *argtypes)
{
	SPIPlanPtr	plan = SPI_prepare(sql, nargs, argtypes);

	if (plan == NULL || SPI_keepplan(plan) != 0)
		elog(ERROR, "could not prepare query: %s", sql);
	return plan;
}

static Oid
OrderStateTypeOid(void)
{
	return GetSysCacheOid2(TYPENAMENSP, Anum_pg_type_oid,
						   CStringGetDatum("order_state"),
						   ObjectIdGetDatum(get_namespace_oid("orderflow", false)));
}

static void
PreparePlans(void)
{
	Oid			int8arg[1] = {INT8OID};
	Oid			linesargs[2] = {INT8OID, TEXTOID};
	Oid			cancelargs[4] = {INT8OID, INT4OID, INT4OID, TEXTOID};
	Oid			updateargs[3] = {INT8OID, TEXTOID, InvalidOid};

	if (plan_generation == OrderflowCacheGeneration() && order_plan != NULL)
		return;
	if (order_plan)
	{
		SPI_freeplan(order_plan);
		SPI_freeplan(lines_plan);
		SPI_freeplan(cancel_plan);
		SPI_freeplan(update_plan);
		order_plan = lines_plan = cancel_plan = update_plan = NULL;
	}
	updateargs[2] = OrderStateTypeOid();

	/*
	 * The order, locked, and the warehouses to take from.  Run as the caller:
	 * row-level security decides which orders the caller may allocate.
	 */
	order_plan = Prepare("SELECT o.state, o.allocation_policy,"
						 "       coalesce(o.allow_split, s.allow_split), o.order_no,"
						 "       ARRAY(SELECT w.code FROM orderflow.warehouses w"
						 "              WHERE w.active ORDER BY w.priority, w.code)"
						 "  FROM orderflow.orders o"
						 "  JOIN orderflow.shops s ON s.id OPERATOR(pg_catalog.=) o.shop_id"
						 " WHERE o.id OPERATOR(pg_catalog.=) $1"
						 "   FOR UPDATE OF o",
						 1, int8arg);
	/* Its lines, and whether holds wait to be claimed under its number. */
	lines_plan = Prepare("SELECT x.line_no, x.sku, x.requested, x.held, x.need,"
						 "       EXISTS (SELECT FROM orderflow.reservations r"
						 "                WHERE r.ref OPERATOR(pg_catalog.=) $2"
						 "                  AND r.status OPERATOR(pg_catalog.=) 'held'"
						 "                  AND r.order_id IS NULL)"
						 "  FROM orderflow.line_needs($1) x",
						 2, linesargs);
	cancel_plan = Prepare("SELECT orderflow.cancel_units($1, $2, $3, $4)",
						  4, cancelargs);
	update_plan = Prepare("UPDATE orderflow.orders"
						  "   SET allocation_policy = $2, state = $3"
						  " WHERE id OPERATOR(pg_catalog.=) $1",
						  3, updateargs);
	plan_generation = OrderflowCacheGeneration();
}

static AllocationPolicy
ParsePolicy(const char *name)
{
	for (int i = 0; i < (int) lengthof(policy_names); i++)
		if (strcmp(name, policy_names[i]) == 0)
			return (AllocationPolicy) i;
	ereport(ERROR,
			(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
			 errmsg("invalid allocation policy \"%s\"", name),
			 errhint("Use \"split\", \"wait\" or \"cancel_missing\".")));
	pg_unreachable();
}

static char *
TextColumn(HeapTuple tup, TupleDesc desc, int col)
{
	bool		isnull;
	Datum		d = SPI_getbinval(tup, desc, col, &isnull);

	return isnull ? NULL : TextDatumGetCString(d);
}

/* Lock the order and read what allocation needs of it. */
static void
LockOrder(int64 order_id, AllocOrder *o)
{
	Datum		args[1] = {Int64GetDatum(order_id)};
	HeapTuple	tup;
	TupleDesc	desc;
	bool		isnull;
	Datum		d;
	Datum	   *codes;
	bool	   *codenulls;

	if (SPI_execute_plan(order_plan, args, NULL, false, 1) != SPI_OK_SELECT)
		elog(ERROR, "order lock query failed");
	if (SPI_processed == 0)
		ereport(ERROR,
				(errcode(ERRCODE_OF_ORDER_NOT_FOUND),
				 errmsg("order %lld does not exist", (long long) order_id)));
	tup = SPI_tuptable->vals[0];
	desc = SPI_tuptable->tupdesc;
	o->id = order_id;
	o->state = DatumGetOrderState(SPI_getbinval(tup, desc, 1, &isnull));
	o->stored_policy = TextColumn(tup, desc, 2);
	d = SPI_getbinval(tup, desc, 3, &isnull);
	o->consent = !isnull && DatumGetBool(d);
	o->order_no = TextColumn(tup, desc, 4);
	d = SPI_getbinval(tup, desc, 5, &isnull);
	deconstruct_array(DatumGetArrayTypeP(d), TEXTOID, -1, false, TYPALIGN_INT,
					  &codes, &codenulls, &o->nwarehouses);
	o->warehouses = palloc(sizeof(char *) * (o->nwarehouses + 1));
	for (int i = 0; i < o->nwarehouses; i++)
		o->warehouses[i] = TextDatumGetCString(codes[i]);
}

/*
 * The order's lines with what they hold, and whether holds wait to be
 * claimed under the order's number, read after the order is locked with a
 * new snapshot (not read-only), so that changes made by whoever held the
 * lock before are seen.
 */
static AllocLine *
ReadLines(AllocOrder *o, int *nlines)
{
	Datum		args[2] = {Int64GetDatum(o->id), CStringGetTextDatum(o->order_no)};
	AllocLine  *lines;

	if (SPI_execute_plan(lines_plan, args, NULL, false, 0) != SPI_OK_SELECT)
		elog(ERROR, "order line query failed");
	*nlines = (int) SPI_processed;
	o->has_checkout_holds = false;
	lines = palloc0(sizeof(AllocLine) * (*nlines + 1));
	for (int i = 0; i < *nlines; i++)
	{
		HeapTuple	tup = SPI_tuptable->vals[i];
		TupleDesc	desc = SPI_tuptable->tupdesc;
		bool		isnull;

		lines[i].line_no = DatumGetInt32(SPI_getbinval(tup, desc, 1, &isnull));
		lines[i].sku = TextColumn(tup, desc, 2);
		lines[i].requested = DatumGetInt32(SPI_getbinval(tup, desc, 3, &isnull));
		lines[i].got = DatumGetInt32(SPI_getbinval(tup, desc, 4, &isnull));
		lines[i].need = DatumGetInt32(SPI_getbinval(tup, desc, 5, &isnull));
		o->has_checkout_holds = DatumGetBool(SPI_getbinval(tup, desc, 6, &isnull));
		initStringInfo(&lines[i].where);
	}
	return lines;
}

static void
NoteWhere(AllocLine *l, const char *where, bool replace)
{
	if (replace)
		resetStringInfo(&l->where);
	else if (l->where.len > 0)
		appendStringInfoChar(&l->where, ',');
	appendStringInfoString(&l->where, where);
}

/* Take qty for a line from a warehouse; false when it is not there. */
static bool
TakeForLine(AllocLine *l, const char *warehouse, int32 qty, List **holds)
{
	if (!StockTakePlanned(StockLookup(l->sku, warehouse), qty, l->line_no, holds))
		return false;
	l->need -= qty;
	l->got += qty;
	return true;
}

/* The first warehouse, by priority, that has every missing unit. */
static const char *
SingleWarehouse(AllocOrder *o, AllocLine *lines, int nlines)
{
	for (int w = 0; w < o->nwarehouses; w++)
	{
		bool		fills = true;

		for (int i = 0; i < nlines && fills; i++)
		{
			if (lines[i].need <= 0)
				continue;
			fills = lines[i].sku != NULL &&
				StockAvailable(StockLookup(lines[i].sku, o->warehouses[w])) >= lines[i].need;
		}
		if (fills)
			return o->warehouses[w];
	}
	return NULL;
}

static const char *
Outcome(const AllocLine *l, AllocationPolicy policy)
{
	if (l->sku == NULL)
		return "unmapped sku";
	if (l->need <= 0)
		return "allocated";
	if (policy == POLICY_CANCEL_MISSING)
		return l->got == 0 ? "cancelled" : "partly cancelled";
	return l->got > 0 ? "partly backordered" : "backordered";
}

/*
 * orderflow.allocate(order_id, policy): allocate stock to every line of an
 * approved or backordered order (or, when split, of one with parts still
 * outstanding).  Returns one row per line.
 */
PG_FUNCTION_INFO_V1(orderflow_allocate);
Datum
orderflow_allocate(PG_FUNCTION_ARGS)
{
	TupleDesc	desc;
	Tuplestorestate *tupstore;
	AllocOrder	o;
	AllocLine  *lines;
	int			nlines;
	AllocationPolicy policy;
	List	   *holds = NIL;
	bool		missing = false;
	bool		held_any = false;
	bool		movable;
	bool		to_set = false;
	OrderState	to = OS_PENDING_PAYMENT;
	const char *reason = NULL;

	if (PG_ARGISNULL(0))
		ereport(ERROR,
				(errcode(ERRCODE_NULL_VALUE_NOT_ALLOWED),
				 errmsg("order id must not be null")));
	tupstore = MaterializeResult(fcinfo, &desc);

	if (SPI_connect() != SPI_OK_CONNECT)
		elog(ERROR, "SPI_connect failed");
	PreparePlans();
	LockOrder(PG_GETARG_INT64(0), &o);

	policy = ParsePolicy(!PG_ARGISNULL(1) ? text_to_cstring(PG_GETARG_TEXT_PP(1)) :
						 o.stored_policy != NULL ? o.stored_policy : "wait");
	movable = o.state == OS_APPROVED || o.state == OS_BACKORDERED;
	if (!movable &&
		!((o.state == OS_ALLOCATED || o.state == OS_PARTIALLY_SHIPPED) &&
		  o.stored_policy != NULL && strcmp(o.stored_policy, "split") == 0))
		ereport(ERROR,
				(errcode(ERRCODE_OF_ORDER_NOT_ALLOCATABLE),
				 errmsg("order %lld cannot be allocated in state \"%s\"",
						(long long) o.id, OrderStateName(o.state)),
				 errdetail("Orders are allocated when approved or backordered (or, when split, while parts are outstanding).")));
	if (policy == POLICY_SPLIT && !o.consent)
		policy = POLICY_WAIT;

	lines = ReadLines(&o, &nlines);

	/* Holds placed at checkout under the platform order number come first. */
	if (o.has_checkout_holds)
	{
		for (int i = 0; i < nlines; i++)
		{
			int32		claimed;

			if (lines[i].need <= 0 || lines[i].sku == NULL)
				continue;
			claimed = StockClaimHolds(o.id, lines[i].line_no, lines[i].sku,
									  o.order_no, lines[i].need);
			if (claimed > 0)
			{
				lines[i].need -= claimed;
				lines[i].got += claimed;
				NoteWhere(&lines[i], "claimed", true);
			}
		}
	}

	/* One warehouse that can ship everything still missing, by priority. */
	for (int i = 0; i < nlines; i++)
		missing |= lines[i].need > 0;
	if (missing)
	{
		const char *single = SingleWarehouse(&o, lines, nlines);

		if (single != NULL)
			for (int i = 0; i < nlines; i++)
				if (lines[i].need > 0 &&
					TakeForLine(&lines[i], single, lines[i].need, &holds))
					NoteWhere(&lines[i], single, true);
	}

	/* Whatever is still missing: line by line, warehouse by warehouse. */
	for (int i = 0; i < nlines; i++)
	{
		if (lines[i].sku == NULL)
			continue;
		for (int w = 0; w < o.nwarehouses && lines[i].need > 0; w++)
		{
			int64		avail = StockAvailable(StockLookup(lines[i].sku, o.warehouses[w]));
			int32		take = (int32) Min((int64) lines[i].need, avail);

			if (take > 0 && TakeForLine(&lines[i], o.warehouses[w], take, &holds))
				NoteWhere(&lines[i], o.warehouses[w], false);
		}
	}

	missing = false;
	for (int i = 0; i < nlines; i++)
	{
		missing |= lines[i].need > 0;
		held_any |= lines[i].got > 0;
	}

	if (!missing)
	{
		if (movable)
		{
			to_set = true;
			to = OS_ALLOCATED;
			reason = "stock allocated";
		}
	}
	else if (policy == POLICY_WAIT)
	{
		/* All or nothing: give back what this call took; claims stay. */
		ListCell   *lc;

		StockGiveBack(holds);
		foreach(lc, holds)
		{
			StockHold  *h = (StockHold *) lfirst(lc);

			for (int i = 0; i < nlines; i++)
				if (lines[i].line_no == h->line_no)
				{
					lines[i].got -= h->qty;
					lines[i].need += h->qty;
				}
		}
		holds = NIL;
		for (int i = 0; i < nlines; i++)
			if (strcmp(lines[i].where.data, "claimed") != 0)
				resetStringInfo(&lines[i].where);
		if (o.state == OS_APPROVED)
		{
			to_set = true;
			to = OS_BACKORDERED;
			reason = "waiting for stock";
		}
	}
	else if (policy == POLICY_SPLIT)
	{
		if (held_any && movable)
		{
			to_set = true;
			to = OS_ALLOCATED;
			reason = "split: shipping what is in stock";
		}
		else if (!held_any && o.state == OS_APPROVED)
		{
			to_set = true;
			to = OS_BACKORDERED;
			reason = "waiting for stock";
		}
	}

	StockInsertHolds(holds, o.id);

	if (missing && policy == POLICY_CANCEL_MISSING)
	{
		/* Cancel what is not there and refund it. */
		for (int i = 0; i < nlines; i++)
		{
			Datum		args[4];

			if (lines[i].need <= 0)
				continue;
			args[0] = Int64GetDatum(o.id);
			args[1] = Int32GetDatum(lines[i].line_no);
			args[2] = Int32GetDatum(lines[i].need);
			args[3] = CStringGetTextDatum("out of stock");
			CancelUnitsTrusted(args);
		}
		to_set = held_any ? movable : true;
		to = held_any ? OS_ALLOCATED : OS_CANCELLED;
		reason = held_any ? "missing lines cancelled" : "out of stock";
	}

	/*
	 * One update of the locked order row: the state change (validated and
	 * audited by the trigger, with the reason) and the policy.
	 */
	if (to_set || o.stored_policy == NULL ||
		strcmp(o.stored_policy, policy_names[policy]) != 0)
	{
		Datum		args[3];

		args[0] = Int64GetDatum(o.id);
		args[1] = CStringGetTextDatum(policy_names[policy]);
		args[2] = OrderStateGetDatum(to_set ? to : o.state);
		UpdateOrderWithReason(update_plan, args, NULL, o.id, reason);
	}

	/*
	 * The lines live in SPI's memory, which SPI_finish frees; the tuplestore
	 * keeps its own copy of each row.
	 */
	for (int i = 0; i < nlines; i++)
	{
		Datum		values[6];
		bool		nulls[6] = {false, false, false, false, false, false};

		values[0] = Int32GetDatum(lines[i].line_no);
		values[1] = lines[i].sku ? CStringGetTextDatum(lines[i].sku) : (Datum) 0;
		nulls[1] = lines[i].sku == NULL;
		values[2] = Int32GetDatum(lines[i].requested);
		values[3] = Int32GetDatum(lines[i].got);
		values[4] = lines[i].where.len > 0 ? CStringGetTextDatum(lines[i].where.data) : (Datum) 0;
		nulls[4] = lines[i].where.len == 0;
		values[5] = CStringGetTextDatum(Outcome(&lines[i], policy));
		tuplestore_putvalues(tupstore, desc, values, nulls);
	}
	SPI_finish();
	return (Datum) 0;
}

/*
 * orderflow.trusted_write(): whether one of orderflow's stock functions is
 * running in this backend (see TrustedWritesBegin); read by the guard
 * triggers.
 */
PG_FUNCTION_INFO_V1(orderflow_trusted_write);
Datum
orderflow_trusted_write(PG_FUNCTION_ARGS)
{
	PG_RETURN_BOOL(trusted_depth > 0);
}

/*
 * Call the PL/pgSQL function named by signature with this call's
 * arguments, trusted writes on while it runs, off again however it ends.
 * The function is called through fmgr, so it runs as the caller, with the
 * caller's row-level security, and needs no EXECUTE grant of its own.
 */
static Datum
CallTrusted(FunctionCallInfo fcinfo, const char *signature)
{
	FmgrInfo   *steps = (FmgrInfo *) fcinfo->flinfo->fn_extra;

	LOCAL_FCINFO(inner, 5);
	Datum		result = (Datum) 0;

	Assert(fcinfo->nargs <= 5);
	if (steps == NULL)
	{
		Oid			fn = DatumGetObjectId(DirectFunctionCall1(to_regprocedure,
															  CStringGetTextDatum(signature)));

		if (!OidIsValid(fn))
			elog(ERROR, "function %s does not exist", signature);
		steps = MemoryContextAllocZero(fcinfo->flinfo->fn_mcxt, sizeof(FmgrInfo));
		fmgr_info_cxt(fn, steps, fcinfo->flinfo->fn_mcxt);
		fcinfo->flinfo->fn_extra = steps;
	}
	InitFunctionCallInfoData(*inner, steps, fcinfo->nargs, fcinfo->fncollation, NULL, NULL);
	for (int i = 0; i < fcinfo->nargs; i++)
		inner->args[i] = fcinfo->args[i];

	TrustedWritesBegin();
	PG_TRY();
	{
		result = FunctionCallInvoke(inner);
	}
	PG_FINALLY();
	{
		TrustedWritesEnd();
	}
	PG_END_TRY();
	fcinfo->isnull = inner->isnull;
	return result;
}

/* orderflow.cancel_line(order_id, line_no, reason): see cancel_line_steps. */
PG_FUNCTION_INFO_V1(orderflow_cancel_line);
Datum
orderflow_cancel_line(PG_FUNCTION_ARGS)
{
	return CallTrusted(fcinfo, "orderflow.cancel_line_steps(bigint,integer,text)");
}

/*
 * orderflow.substitute_line(order_id, line_no, sku, unit_price, reason): see
 * substitute_line_steps.
 */
PG_FUNCTION_INFO_V1(orderflow_substitute_line);
Datum
orderflow_substitute_line(PG_FUNCTION_ARGS)
{
	return CallTrusted(fcinfo, "orderflow.substitute_line_steps(bigint,integer,text,numeric,text)");
}
