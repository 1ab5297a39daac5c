/*-------------------------------------------------------------------------
 *
 * orderflow.c
 *	  Module entry point: GUCs, shared-memory hooks and small helpers the
 *	  other files share.
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include "funcapi.h"
#include "miscadmin.h"
#include "storage/ipc.h"
#include "storage/shmem.h"
#include "utils/guc.h"
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
