// The Kotlin side of the bindings test: the enroll -> offline edit -> sync flow against
// a real lotse-server, typed errors, and the listener. Prints "N passed, M failed".
import java.net.URI
import java.net.http.HttpClient
import java.net.http.HttpRequest
import java.net.http.HttpResponse
import java.nio.file.Files
import java.util.concurrent.CountDownLatch
import java.util.concurrent.TimeUnit
import kotlinx.coroutines.runBlocking
import kotlinx.coroutines.withTimeout
import uniffi.lotse_core.*

val serverUrl: String = System.getenv("LOTSE_TEST_URL") ?: error("LOTSE_TEST_URL not set")
val coordinatorToken: String = System.getenv("LOTSE_TEST_TOKEN") ?: error("LOTSE_TEST_TOKEN not set")
val volunteerId: String = System.getenv("LOTSE_TEST_VOLUNTEER") ?: error("LOTSE_TEST_VOLUNTEER not set")
val http: HttpClient = HttpClient.newHttpClient()

fun api(method: String, path: String): Pair<Int, String> {
    val request = HttpRequest.newBuilder(URI.create(serverUrl + path))
        .header("authorization", "Bearer $coordinatorToken")
        .method(method, HttpRequest.BodyPublishers.noBody())
        .build()
    val response = http.send(request, HttpResponse.BodyHandlers.ofString())
    return response.statusCode() to response.body()
}

fun enrollmentCode(): String {
    val (status, body) = api("POST", "/api/v1/volunteers/$volunteerId/enrollment-codes")
    check(status == 201) { "enrollment code: $status $body" }
    return Regex("\"code\"\\s*:\\s*\"([^\"]+)\"").find(body)!!.groupValues[1]
}

fun key(seed: Int): ByteArray = ByteArray(32) { (it * 7 + seed).toByte() }

fun openClient(dir: String, seed: Int = 1): LotseClient =
    LotseClient.open(LotseConfig(dataDir = dir, serverUrl = serverUrl, key = key(seed)))

fun tempDir(): String = Files.createTempDirectory("lotse-kotlin").toString()

fun expect(condition: Boolean, what: String) {
    if (!condition) throw AssertionError(what)
}

fun enrollAndOfflineEditThenSync() {
    val client = openClient(tempDir())
    runBlocking {
        withTimeout(30_000) {
            val enrolled = client.enroll(enrollmentCode(), "Pixel 7 (Kotlin-Test)")
            expect(enrolled.volunteerId == volunteerId, "enrolled as the volunteer")
            client.syncNow()
        }
    }
    client.setNetworkAvailable(false)
    val caseId = client.createCase(NewCaseRecord("K.T.", CaseTopic.BEHOERDEN, listOf("ar", "de")))
    val noteId = client.addNote(caseId, "Antrag vorbereitet")
    client.editNote(caseId, noteId, "Antrag vorbereitet und abgegeben")
    client.addAppointment(caseId, NewAppointmentRecord(1_772_616_600_000, 1_772_620_200_000, "Ausländerbehörde", "Verlängerung"))
    client.logHours(caseId, NewHoursRecord("2026-03-04", 90u, 15u, "begleitung"))
    expect(client.caseSyncStatus(caseId) is DocSyncStatus.Pending, "pending while offline")
    expect(client.listCases().single().noteCount == 1u, "one note listed")
    client.setNetworkAvailable(true)
    runBlocking { withTimeout(30_000) { client.syncNow() } }
    expect(client.caseSyncStatus(caseId) is DocSyncStatus.Synced, "synced after sync_now")
    val lease = client.checkLease()
    expect(lease is LeaseRecord.Until && lease.untilMs > System.currentTimeMillis() + 29L * 24 * 3_600_000,
        "the sync renewed the lease: $lease")
    val (status, body) = api("GET", "/api/v1/cases/$caseId")
    expect(status == 200, "coordinator reads the case: $status")
    expect(body.contains("Antrag vorbereitet und abgegeben"), "note on the server")
    expect(body.contains("Ausländerbehörde"), "appointment on the server")
    expect(body.contains("\"minutes\":90"), "hours on the server")
    expect(client.monthlyHours(2026u)[2].minutes == 90uL, "March totals")
    client.shutdown()
}

fun badInputGivesTypedErrors() {
    val dir = tempDir()
    val client = openClient(dir)
    runBlocking { withTimeout(30_000) { client.enroll(enrollmentCode(), "Kotlin-Fehler") } }
    client.setNetworkAvailable(false)
    val caseId = client.createCase(NewCaseRecord("F.E.", CaseTopic.BILDUNG, listOf()))
    fun <T> throwsA(kind: String, block: () -> T) {
        try {
            block()
            throw AssertionError("expected $kind")
        } catch (e: LotseException) {
            expect(e::class.simpleName == kind, "expected $kind, got ${e::class.simpleName}: ${e.message}")
        }
    }
    throwsA("InvalidInput") { client.addNote(caseId, "") }
    throwsA("InvalidInput") { client.addNote(caseId, "x".repeat(100_001)) }
    throwsA("InvalidInput") { client.addNote("not-an-id", "text") }
    throwsA("NotFound") { client.addNote("4NMNnkMhL8jXrdJ9jamS58PAVdXu", "text") }
    throwsA("NotFound") { client.editNote(caseId, "0123456789abcdef", "text") }
    throwsA("InvalidInput") { client.addAppointment(caseId, NewAppointmentRecord(-5, 10, "", "")) }
    throwsA("InvalidInput") { client.addAppointment(caseId, NewAppointmentRecord(Long.MAX_VALUE, Long.MAX_VALUE, "", "")) }
    throwsA("InvalidInput") { client.appointmentsBetween(10, 5) }
    throwsA("InvalidInput") { client.logHours(caseId, NewHoursRecord("2026-02-30", 60u, 0u, "begleitung")) }
    throwsA("InvalidInput") { client.monthlyHours(0u) }
    throwsA("InvalidInput") { client.setAvailability(listOf(AvailabilityRecord(8u, "09:00", "10:00"))) }
    val err = try { client.addNote(caseId, ""); null } catch (e: LotseException.InvalidInput) { e }
    expect(err?.field == "text" && err.reason.isNotEmpty(), "field and reason")
    client.shutdown()
    throwsA("Closed") { client.listCases() }
    throwsA("WrongKey") { openClient(dir, seed = 2) }
    throwsA("InvalidInput") { LotseClient.open(LotseConfig(dir, serverUrl, ByteArray(3))) }
}

fun listenerHearsStates() {
    val client = openClient(tempDir())
    val latch = CountDownLatch(1)
    val states = mutableListOf<SyncStateRecord>()
    val handle = client.subscribe(object : SyncListener {
        override fun onSyncState(state: SyncStateRecord) {
            synchronized(states) { states.add(state) }
            latch.countDown()
        }
        override fun onDocumentsChanged(ids: List<String>) {}
        override fun onCaseDeleted(id: String) {}
        override fun onCaseReplaced(replaced: CaseReplacedRecord) {}
    })
    expect(latch.await(10, TimeUnit.SECONDS), "current state delivered")
    expect(synchronized(states) { states.first() } is SyncStateRecord.Offline, "not enrolled: offline")
    expect(client.checkLease() is LeaseRecord.NoLease, "no lease before the first sync")
    handle.cancel()
    client.shutdown()
}

fun main() {
    val tests = listOf(
        "enroll, offline edit, sync" to ::enrollAndOfflineEditThenSync,
        "bad input gives typed errors" to ::badInputGivesTypedErrors,
        "listener hears states" to ::listenerHearsStates,
    )
    var passed = 0
    var failed = 0
    for ((name, test) in tests) {
        try {
            test()
            println("PASS $name")
            passed++
        } catch (e: Throwable) {
            println("FAIL $name: $e")
            failed++
        }
    }
    println("kotlin: $passed passed, $failed failed")
    kotlin.system.exitProcess(if (failed == 0) 0 else 1)
}
