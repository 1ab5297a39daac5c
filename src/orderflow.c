/*-------------------------------------------------------------------------
 *
 * orderflow.c
 *	  Module entry point: GUCs, shared-memory hooks and small helpers the
 *	  other files share.
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include "access/genam.h"
#include "access/heapam.h"
#include "access/stratnum.h"
#include "access/table.h"
#include "access/tableam.h"
#include "catalog/pg_class.h"
#include "commands/trigger.h"
#include "executor/executor.h"
#include "executor/spi.h"
#include "funcapi.h"
#include "miscadmin.h"
#include "storage/ipc.h"
#include "storage/shmem.h"
#include "tcop/utility.h"
#include "utils/guc.h"
#include "utils/rel.h"
#include "utils/snapmgr.h"
#include "utils/tuplestore.h"

#include "orderflow.h"
#include "allocator.h"

PG_MODULE_MAGIC;

void		_PG_init(void);

/* Set when the allocator's shared memory has been initialized. */
bool		orderflow_shmem_ready = false;

/* orderflow.reason: the reason recorded with the next state changes. */
char	   *orderflow_reason = NULL;

#if PG_VERSION_NUM >= 150000
static shmem_request_hook_type prev_shmem_request_hook = NULL;
#endif
static shmem_startup_hook_type prev_shmem_startup_hook = NULL;

static void
OrderflowShmemRequest(void)
{
#if PG_VERSION_NUM >= 150000
	if (prev_shmem_request_hook)
		prev_shmem_request_hook();
#endif
	AllocatorShmemRequest();
}

static void
OrderflowShmemStartup(void)
{
	if (prev_shmem_startup_hook)
		prev_shmem_startup_hook();
	AllocatorShmemStartup();
	orderflow_shmem_ready = true;
}

void
_PG_init(void)
{
	DefineCustomStringVariable("orderflow.reason",
							   "Reason recorded in the audit history for the next order state changes.",
							   "Usually set with SET LOCAL inside the transaction that changes the state.",
							   &orderflow_reason,
							   "",
							   PGC_USERSET,
							   0,
							   NULL, NULL, NULL);

	AllocatorDefineGucs();

#if PG_VERSION_NUM >= 150000
	MarkGUCPrefixReserved("orderflow");
#else
	EmitWarningsOnPlaceholders("orderflow");
#endif

	if (!process_shared_preload_libraries_in_progress)
		return;

#if PG_VERSION_NUM >= 150000
	prev_shmem_request_hook = shmem_request_hook;
	shmem_request_hook = OrderflowShmemRequest;
#else
	OrderflowShmemRequest();
#endif
	prev_shmem_startup_hook = shmem_startup_hook;
	shmem_startup_hook = OrderflowShmemStartup;
}

/*
 * Fail clearly when a function that needs the allocator's shared memory is
 * called in a server that did not preload the library.
 */
void
RequireSharedMemory(const char *funcname)
{
	if (!orderflow_shmem_ready)
		ereport(ERROR,
				(errcode(ERRCODE_OBJECT_NOT_IN_PREREQUISITE_STATE),
				 errmsg("%s requires orderflow to be loaded via shared_preload_libraries",
						funcname),
				 errhint("Add orderflow to shared_preload_libraries in postgresql.conf and restart the server.")));
}

/*
 * Prepare a set-returning function to return its rows in materialize mode:
 * the tuplestore lives in per-query memory and the result descriptor comes
 * from the function's declared result type.
 */
Tuplestorestate *
MaterializeResult(FunctionCallInfo fcinfo, TupleDesc *tupdesc)
{
	ReturnSetInfo *rsinfo = (ReturnSetInfo *) fcinfo->resultinfo;
	MemoryContext oldcontext;
	Tuplestorestate *tupstore;
	TupleDesc	desc;

	if (rsinfo == NULL || !IsA(rsinfo, ReturnSetInfo) ||
		(rsinfo->allowedModes & SFRM_Materialize) == 0)
		ereport(ERROR,
				(errcode(ERRCODE_FEATURE_NOT_SUPPORTED),
				 errmsg("set-valued function called in context that cannot accept a set")));
	if (get_call_result_type(fcinfo, NULL, &desc) != TYPEFUNC_COMPOSITE)
		elog(ERROR, "return type must be a row type");

	oldcontext = MemoryContextSwitchTo(rsinfo->econtext->ecxt_per_query_memory);
	desc = CreateTupleDescCopy(desc);
	tupstore = tuplestore_begin_heap(true, false, work_mem);
	MemoryContextSwitchTo(oldcontext);

	rsinfo->returnMode = SFRM_Materialize;
	rsinfo->setResult = tupstore;
	rsinfo->setDesc = desc;
	*tupdesc = desc;
	return tupstore;
}

/*
 * Check that a trigger function runs as the trigger it was written for:
 * called by the trigger manager, BEFORE or AFTER, and FOR EACH ROW (row >
 * 0), FOR EACH STATEMENT (row == 0) or either (row < 0).  When oldtuple is
 * given, the event must be an INSERT or UPDATE and the rows are returned:
 * *oldtuple is NULL for an INSERT.
 */
void
CheckTriggerCall(FunctionCallInfo fcinfo, const char *name, bool before,
				 int row, HeapTuple *oldtuple, HeapTuple *newtuple)
{
	TriggerData *trigdata = (TriggerData *) fcinfo->context;
	TriggerEvent ev;

	if (!CALLED_AS_TRIGGER(fcinfo))
		ereport(ERROR,
				(errcode(ERRCODE_E_R_I_E_TRIGGER_PROTOCOL_VIOLATED),
				 errmsg("function \"%s\" was not called by trigger manager", name)));
	ev = trigdata->tg_event;
	if ((before ? !TRIGGER_FIRED_BEFORE(ev) : !TRIGGER_FIRED_AFTER(ev)) ||
		(row > 0 && !TRIGGER_FIRED_FOR_ROW(ev)) ||
		(row == 0 && !TRIGGER_FIRED_FOR_STATEMENT(ev)))
		ereport(ERROR,
				(errcode(ERRCODE_E_R_I_E_TRIGGER_PROTOCOL_VIOLATED),
				 errmsg("function \"%s\" must be fired %s ... %s", name,
						before ? "BEFORE" : "AFTER",
						row > 0 ? "FOR EACH ROW" : row == 0 ? "FOR EACH STATEMENT" : "")));
	if (oldtuple == NULL)
		return;
	if (TRIGGER_FIRED_BY_INSERT(ev))
	{
		*oldtuple = NULL;
		*newtuple = trigdata->tg_trigtuple;
	}
	else if (TRIGGER_FIRED_BY_UPDATE(ev))
	{
		*oldtuple = trigdata->tg_trigtuple;
		*newtuple = trigdata->tg_newtuple;
	}
	else
		ereport(ERROR,
				(errcode(ERRCODE_E_R_I_E_TRIGGER_PROTOCOL_VIOLATED),
				 errmsg("function \"%s\" must be fired for INSERT or UPDATE", name)));
}

/*
 * The number of a column of a table orderflow reads or a trigger of its is
 * fired on; an error names the table and the column when there is none
 * (detail: what the table should be, or NULL).
 */
AttrNumber
RequiredColumn(Relation rel, const char *name, const char *detail)
{
	int			attnum = SPI_fnumber(RelationGetDescr(rel), name);

	if (attnum <= 0)
		ereport(ERROR,
				(errcode(ERRCODE_E_R_I_E_TRIGGER_PROTOCOL_VIOLATED),
				 errmsg("table \"%s\" has no column \"%s\"",
						RelationGetRelationName(rel), name),
				 detail ? errdetail_internal("%s", detail) : 0));
	return (AttrNumber) attnum;
}

/*
 * Prepare a statement and keep its plan for the life of the backend.  Every
 * saved plan of orderflow is prepared once and never freed: the plan cache
 * follows changes to the objects it names (it analyzes the text again), and
 * no plan is freed while a nested call may be running it.
 */
SPIPlanPtr
PrepareKeptPlan(const char *sql, int nargs, Oid *argtypes)
{
	SPIPlanPtr	plan = SPI_prepare(sql, nargs, argtypes);

	if (plan == NULL || SPI_keepplan(plan) != 0)
		elog(ERROR, "could not prepare query: %s", sql);
	return plan;
}

/*
 * Open a table for DirectInsertRow, checking that it is a plain table with
 * exactly the given columns, in that order.
 */
void
DirectInsertOpen(DirectInsert * di, Oid relid, const char *const *columns,
				 int ncolumns)
{
	TupleDesc	desc;

	PreventCommandIfReadOnly("INSERT");
	di->rel = table_open(relid, RowExclusiveLock);
	desc = RelationGetDescr(di->rel);
	if (di->rel->rd_rel->relkind != RELKIND_RELATION)
		ereport(ERROR,
				(errcode(ERRCODE_WRONG_OBJECT_TYPE),
				 errmsg("\"%s\" is not a plain table", RelationGetRelationName(di->rel)),
				 errdetail("Its rows are written directly into its heap and indexes.")));
	if (desc->natts != ncolumns)
		ereport(ERROR,
				(errcode(ERRCODE_OBJECT_NOT_IN_PREREQUISITE_STATE),
				 errmsg("table \"%s\" does not have the columns orderflow writes",
						RelationGetRelationName(di->rel)),
				 errdetail("It has %d columns, not %d.", desc->natts, ncolumns)));
	for (int i = 0; i < ncolumns; i++)
		if (TupleDescAttr(desc, i)->attisdropped ||
			strcmp(NameStr(TupleDescAttr(desc, i)->attname), columns[i]) != 0)
			ereport(ERROR,
					(errcode(ERRCODE_OBJECT_NOT_IN_PREREQUISITE_STATE),
					 errmsg("table \"%s\" does not have the columns orderflow writes",
							RelationGetRelationName(di->rel)),
					 errdetail("Column %d should be \"%s\".", i + 1, columns[i])));

	di->estate = CreateExecutorState();
	di->rri = makeNode(ResultRelInfo);
	InitResultRelInfo(di->rri, di->rel, 1, NULL, 0);
	ExecOpenIndices(di->rri, false);
	di->slot = MakeSingleTupleTableSlot(desc, &TTSOpsHeapTuple);
}

/* Insert one row into the heap and every index (partial ones as needed). */
void
DirectInsertRow(DirectInsert * di, Datum *values, bool *nulls)
{
	HeapTuple	tuple = heap_form_tuple(RelationGetDescr(di->rel), values, nulls);

	simple_heap_insert(di->rel, tuple);
	ExecStoreHeapTuple(tuple, di->slot, true);
#if PG_VERSION_NUM >= 160000
	ExecInsertIndexTuples(di->rri, di->slot, di->estate, false, false, NULL, NIL, false);
#elif PG_VERSION_NUM >= 140000
	ExecInsertIndexTuples(di->rri, di->slot, di->estate, false, false, NULL, NIL);
#else
	di->estate->es_result_relation_info = di->rri;
	ExecInsertIndexTuples(di->slot, di->estate, false, NULL, NIL);
#endif
	ExecClearTuple(di->slot);
	ResetPerTupleExprContext(di->estate);
}

void
DirectInsertClose(DirectInsert * di)
{
	ExecDropSingleTupleTableSlot(di->slot);
	ExecCloseIndices(di->rri);
	FreeExecutorState(di->estate);
	table_close(di->rel, NoLock);
}

/*
 * Visit the rows of a table that an index finds equal to key in its first
 * column, as the snapshot sees them.  visit returns false to stop.
 */
void
IndexScanEqual(Oid relid, Oid indexid, RegProcedure eqproc, Datum key,
			   Snapshot snapshot, IndexScanVisit visit, void *arg)
{
	Relation	rel = table_open(relid, AccessShareLock);
	Relation	index = index_open(indexid, AccessShareLock);
	TupleTableSlot *slot = table_slot_create(rel, NULL);
	IndexScanDesc scan;
	ScanKeyData skey;

	ScanKeyEntryInitialize(&skey, 0, 1, BTEqualStrategyNumber, InvalidOid,
						   index->rd_indcollation[0], eqproc, key);
	scan = index_beginscan(rel, index, snapshot, 1, 0);
	index_rescan(scan, &skey, 1, NULL, 0);
	while (index_getnext_slot(scan, ForwardScanDirection, slot))
		if (!visit(slot, arg))
			break;
	index_endscan(scan);
	ExecDropSingleTupleTableSlot(slot);
	index_close(index, NoLock);
	table_close(rel, NoLock);
}
