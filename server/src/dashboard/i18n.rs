//! The dashboard's two languages: German first, English second. Texts stand in pairs
//! at the place they are used (`l.t("Anfragen", "Requests")`); the words the data
//! stores as codes (topics, statuses, languages, ...) are translated here. Times are
//! shown in the network's local time (Europe/Berlin).

use axum::http::HeaderMap;

pub use crate::app::caller::cookie;
use axum::http::header;
use jiff::Timestamp;
use jiff::tz::TimeZone;
use lotse_protocol::schema::ChangeKind;

pub const LANG_COOKIE: &str = "lotse_lang";

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Lang {
    De,
    En,
}

impl Lang {
    pub fn t<'a>(self, de: &'a str, en: &'a str) -> &'a str {
        match self {
            Lang::De => de,
            Lang::En => en,
        }
    }

    pub fn code(self) -> &'static str {
        match self {
            Lang::De => "de",
            Lang::En => "en",
        }
    }

    pub fn parse(s: &str) -> Option<Lang> {
        match s.trim().to_ascii_lowercase().as_str() {
            "de" => Some(Lang::De),
            "en" => Some(Lang::En),
            _ => None,
        }
    }

    pub fn other(self) -> Lang {
        match self {
            Lang::De => Lang::En,
            Lang::En => Lang::De,
        }
    }

    /// `?lang=` first, then the cookie set by the switch, then `Accept-Language`,
    /// then German.
    pub fn detect(query: Option<&str>, headers: &HeaderMap) -> Lang {
        if let Some(l) = query
            .and_then(|q| query_param(q, "lang"))
            .and_then(|v| Lang::parse(&v))
        {
            return l;
        }
        if let Some(l) = cookie(headers, LANG_COOKIE).and_then(|v| Lang::parse(&v)) {
            return l;
        }
        headers
            .get(header::ACCEPT_LANGUAGE)
            .and_then(|v| v.to_str().ok())
            .and_then(from_accept_language)
            .unwrap_or(Lang::De)
    }

    /// A number with this language's decimal mark and one decimal.
    pub fn decimal(self, value: f64) -> String {
        let s = format!("{value:.1}");
        match self {
            Lang::De => s.replace('.', ","),
            Lang::En => s,
        }
    }
}

/// The best of German and English in an `Accept-Language` header, by quality.
fn from_accept_language(value: &str) -> Option<Lang> {
    let mut best: Option<(Lang, f32)> = None;
    for part in value.split(',') {
        let mut pieces = part.split(';');
        let tag = pieces.next().unwrap_or("").trim().to_ascii_lowercase();
        let q = pieces
            .find_map(|p| {
                p.trim()
                    .strip_prefix("q=")
                    .and_then(|q| q.parse::<f32>().ok())
            })
            .unwrap_or(1.0);
        let primary = tag.split('-').next().unwrap_or("");
        let Some(lang) = Lang::parse(primary) else {
            continue;
        };
        if q > 0.0 && best.is_none_or(|(_, bq)| q > bq) {
            best = Some((lang, q));
        }
    }
    best.map(|(l, _)| l)
}

pub fn query_param(query: &str, key: &str) -> Option<String> {
    form_urlencoded::parse(query.as_bytes())
        .find(|(k, _)| k == key)
        .map(|(_, v)| v.into_owned())
}

/// The topics, as the store knows them, in display order.
pub const TOPICS: [&str; 8] = crate::store::Volunteer::TOPICS;

pub fn topic(l: Lang, code: &str) -> String {
    let (de, en) = match code {
        "gesundheit" => ("Gesundheit", "Health"),
        "bildung" => ("Bildung", "Education"),
        "erziehung" => ("Erziehung", "Parenting"),
        "arbeit" => ("Arbeit", "Work"),
        "beruf" => ("Beruf", "Career"),
        "soziales" => ("Soziales", "Social matters"),
        "wohnen" => ("Wohnen", "Housing"),
        "behoerden" => ("Behörden", "Authorities"),
        other => return other.to_owned(),
    };
    l.t(de, en).to_owned()
}

/// Why a field was refused, by the store's rules that the API uses too
/// (`Volunteer::check_*`, `Request::check_*`): their stable code and its one detail (a
/// limit or the value).
pub fn invalid(l: Lang, code: &str, detail: &str) -> String {
    match (l, code) {
        (_, "empty") => l.t("Bitte ausfüllen.", "Please fill in.").into(),
        (Lang::De, "too_long") => format!("Höchstens {detail} Zeichen."),
        (Lang::En, "too_long") => format!("At most {detail} characters."),
        (_, "control_characters") => l
            .t(
                "Bitte keine Steuerzeichen.",
                "No control characters, please.",
            )
            .into(),
        (_, "no_language") => l
            .t(
                "Bitte mindestens eine Sprache wählen.",
                "Please choose at least one language.",
            )
            .into(),
        (Lang::De, "too_many_languages") => format!("Höchstens {detail} Sprachen."),
        (Lang::En, "too_many_languages") => format!("At most {detail} languages."),
        (Lang::De, "not_a_language") => {
            format!("„{detail}“ ist kein Sprachkürzel (zwei Buchstaben wie „hy“).")
        }
        (Lang::En, "not_a_language") => {
            format!("“{detail}” is not a language code (two letters such as “hy”).")
        }
        (Lang::De, "not_a_topic") => format!("„{detail}“ ist kein Thema."),
        (Lang::En, "not_a_topic") => format!("“{detail}” is not a topic."),
        (Lang::De, "not_one_of") => format!("„{detail}“ ist keine der möglichen Angaben."),
        (Lang::En, "not_one_of") => format!("“{detail}” is not one of the choices."),
        (Lang::De, "too_many_slots") => format!("Höchstens {detail} Zeiten."),
        (Lang::En, "too_many_slots") => format!("At most {detail} times."),
        (Lang::De, "too_many_trainings") => format!("Höchstens {detail} Schulungen."),
        (Lang::En, "too_many_trainings") => format!("At most {detail} trainings."),
        (_, "weekday") => l
            .t("Bitte einen Wochentag wählen.", "Please choose a weekday.")
            .into(),
        (_, "time") => l
            .t(
                "Bitte Uhrzeiten wie 14:00 angeben.",
                "Please give times such as 14:00.",
            )
            .into(),
        (_, "slot_order") => l
            .t(
                "Das Ende muss nach dem Beginn liegen.",
                "The end must be after the start.",
            )
            .into(),
        (_, "date") => l
            .t(
                "Bitte ein Datum wie 04.03.2026 angeben.",
                "Please give a date such as 2026-03-04.",
            )
            .into(),
        (_, "no_time") => l
            .t(
                "Bitte Datum und Uhrzeiten angeben.",
                "Please give the date and times.",
            )
            .into(),
        (_, "end_before_start") => l
            .t(
                "Das Ende muss nach dem Beginn liegen.",
                "The end must be after the start.",
            )
            .into(),
        (Lang::De, "out_of_range") => format!("Bitte eine ganze Zahl von {detail}."),
        (Lang::En, "out_of_range") => format!("Please give a whole number from {detail}."),
        (Lang::De, "window_too_long") => format!("Höchstens {detail} Stunden."),
        (Lang::En, "window_too_long") => format!("At most {detail} hours."),
        (_, "in_the_past") => l
            .t(
                "Der Termin liegt in der Vergangenheit.",
                "The appointment is in the past.",
            )
            .into(),
        _ => l
            .t("Bitte prüfen Sie diese Angabe.", "Please check this entry.")
            .into(),
    }
}

pub fn request_status(l: Lang, code: &str) -> String {
    let (de, en) = match code {
        "open" => ("offen", "open"),
        "offered" => ("angeboten", "offered"),
        "assigned" => ("vergeben", "assigned"),
        "done" => ("erledigt", "done"),
        "cancelled" => ("abgesagt", "cancelled"),
        "expired" => ("abgelaufen", "expired"),
        other => return other.to_owned(),
    };
    l.t(de, en).to_owned()
}

pub fn case_status(l: Lang, code: &str) -> String {
    let (de, en) = match code {
        "active" => ("aktiv", "active"),
        "paused" => ("pausiert", "paused"),
        "closed" => ("abgeschlossen", "closed"),
        other => return other.to_owned(),
    };
    l.t(de, en).to_owned()
}

pub fn offer_status(l: Lang, code: &str) -> String {
    let (de, en) = match code {
        "offered" => ("angeboten, noch keine Antwort", "offered, no answer yet"),
        "accepted" => ("angenommen", "accepted"),
        "declined" => ("abgelehnt", "declined"),
        "taken" => ("zu spät (schon vergeben)", "too late (already taken)"),
        "withdrawn" => ("zurückgezogen", "withdrawn"),
        other => return other.to_owned(),
    };
    l.t(de, en).to_owned()
}

pub fn request_action(l: Lang, code: &str) -> String {
    let (de, en) = match code {
        "created" => ("angelegt", "created"),
        "updated" => ("geändert", "edited"),
        "offered" => ("angeboten an", "offered to"),
        "accepted" => ("angenommen von", "accepted by"),
        "declined" => ("abgelehnt von", "declined by"),
        "accept_too_late" => ("zu spät angenommen von", "accepted too late by"),
        "taken" => ("vergeben", "taken"),
        "cancelled" => ("abgesagt", "cancelled"),
        "done" => ("erledigt", "done"),
        "reopened" => ("wieder geöffnet", "reopened"),
        "expired" => ("abgelaufen", "expired"),
        other => return other.to_owned(),
    };
    l.t(de, en).to_owned()
}

/// An audit action about a case (`document.read` ...) in a word, for the case's own trail;
/// any other action as on the organisation's trail (`audit_event`).
pub fn audit_action(l: Lang, code: &str) -> String {
    let (de, en) = match code {
        "document.create" => ("angelegt", "created"),
        "document.read" => ("angesehen", "viewed"),
        "document.sync" => ("synchronisiert", "synced"),
        "document.change" => ("geändert", "changed"),
        "document.export" => ("Auskunft erstellt", "access export made"),
        "document.erase" => ("Eintrag gelöscht", "entry erased"),
        "document.compact" => ("Verlauf verdichtet", "history compacted"),
        "document.delete" => ("gelöscht", "deleted"),
        other => return audit_event(l, other),
    };
    l.t(de, en).to_owned()
}

/// Every action the server writes to the audit trail, in the order the filter offers them.
pub const AUDIT_ACTIONS: [&str; 40] = [
    "document.read",
    "document.sync",
    "document.change",
    "document.create",
    "document.export",
    "document.erase",
    "document.compact",
    "document.delete",
    "request.read",
    "request.erase",
    "volunteer.read",
    "volunteer.create",
    "volunteer.update",
    "volunteer.export",
    "enrollment_code.create",
    "device.enroll",
    "device.revoke",
    "case.share",
    "case.unshare",
    "report.read",
    "report.export",
    "audit.read",
    "audit.export",
    "session.login",
    "coordinator.create",
    "coordinator.invite",
    "coordinator.accept_invite",
    "coordinator.reset_link",
    "coordinator.password_reset",
    "coordinator.password_change",
    "coordinator.role",
    "coordinator.deactivate",
    "coordinator.reactivate",
    "coordinator.two_factor_on",
    "coordinator.two_factor_reset",
    "coordinator.recovery_code",
    "organisation.two_factor",
    "organisation.settings",
    "push_subscription.create",
    "push_subscription.delete",
];

/// An audit action in words that stand on their own (the organisation's trail, where the
/// record is shown beside it); an unknown code as it is.
pub fn audit_event(l: Lang, code: &str) -> String {
    let (de, en) = match code {
        "document.read" => ("Dokument angesehen", "Document viewed"),
        "document.sync" => ("Dokument synchronisiert", "Document synced"),
        "document.change" => ("Dokument geändert", "Document changed"),
        "document.create" => ("Dokument angelegt", "Document created"),
        "document.export" => (
            "Auskunft zu einem Fall erstellt (Art. 15 DSGVO)",
            "Access export of a case (Art. 15 GDPR)",
        ),
        "document.erase" => (
            "Eintrag aus einem Fall gelöscht",
            "Entry erased from a case",
        ),
        "document.compact" => ("Fallverlauf verdichtet", "Case history compacted"),
        "document.delete" => ("Fall gelöscht", "Case deleted"),
        "request.read" => ("Anfrage angesehen", "Request viewed"),
        "request.erase" => (
            "Persönliche Angaben einer Anfrage gelöscht",
            "Personal data of a request erased",
        ),
        "volunteer.read" => ("Profil angesehen", "Profile viewed"),
        "volunteer.create" => ("Lotsin/Lotse angelegt", "Volunteer created"),
        "volunteer.update" => ("Profil geändert", "Profile changed"),
        "volunteer.export" => (
            "Auskunft zu einer Lotsin/einem Lotsen erstellt (Art. 15 DSGVO)",
            "Access export of a volunteer (Art. 15 GDPR)",
        ),
        "enrollment_code.create" => ("Anmeldecode erstellt", "Enrollment code created"),
        "device.enroll" => ("Gerät angemeldet", "Device enrolled"),
        "device.revoke" => ("Gerät gesperrt", "Device revoked"),
        "case.share" => ("Fall zugeteilt", "Case given to a volunteer"),
        "case.unshare" => ("Fall abgenommen", "Case taken from a volunteer"),
        "report.read" => ("Bericht angesehen", "Report viewed"),
        "report.export" => ("Bericht heruntergeladen (CSV)", "Report downloaded (CSV)"),
        "audit.read" => ("Protokoll angesehen", "Audit trail viewed"),
        "audit.export" => (
            "Protokoll heruntergeladen (CSV)",
            "Audit trail downloaded (CSV)",
        ),
        "session.login" => ("Im Dashboard angemeldet", "Logged in to the dashboard"),
        "coordinator.create" => ("Koordinationskonto angelegt", "Coordinator account created"),
        "coordinator.invite" => ("Koordination eingeladen", "Coordinator invited"),
        "coordinator.accept_invite" => ("Einladung angenommen", "Invitation accepted"),
        "coordinator.reset_link" => (
            "Link für ein neues Passwort erstellt",
            "Password reset link made",
        ),
        "coordinator.password_reset" => (
            "Passwort über Link neu gesetzt",
            "Password set through a link",
        ),
        "coordinator.password_change" => ("Eigenes Passwort geändert", "Own password changed"),
        "coordinator.role" => ("Rolle geändert", "Role changed"),
        "coordinator.deactivate" => ("Koordinationskonto deaktiviert", "Coordinator deactivated"),
        "coordinator.reactivate" => ("Koordinationskonto reaktiviert", "Coordinator reactivated"),
        "coordinator.two_factor_on" => ("Zweiten Faktor eingerichtet", "Second factor set up"),
        "coordinator.two_factor_reset" => ("Zweiten Faktor zurückgesetzt", "Second factor reset"),
        "coordinator.recovery_code" => (
            "Mit Wiederherstellungscode angemeldet",
            "Logged in with a recovery code",
        ),
        "organisation.two_factor" => (
            "Zwei-Faktor-Pflicht geändert",
            "Two-factor requirement changed",
        ),
        "organisation.settings" => ("Einstellungen geändert", "Settings changed"),
        "push_subscription.create" => (
            "Benachrichtigungen eingeschaltet",
            "Notifications turned on",
        ),
        "push_subscription.delete" => (
            "Benachrichtigungen ausgeschaltet",
            "Notifications turned off",
        ),
        other => return other.to_owned(),
    };
    l.t(de, en).to_owned()
}

/// The kinds of record the audit trail names, in the order the filter offers them.
pub const AUDIT_SUBJECTS: [&str; 9] = [
    "document",
    "request",
    "volunteer",
    "device",
    "case_volunteer",
    "coordinator",
    "organisation",
    "report",
    "push_subscription",
];

/// The kind of record an audit line is about, in words.
pub fn audit_subject(l: Lang, kind: &str) -> String {
    let (de, en) = match kind {
        "document" => ("Fall oder Kalender", "Case or calendar"),
        "request" => ("Anfrage", "Request"),
        "volunteer" => ("Lotsin/Lotse", "Volunteer"),
        "device" => ("Gerät", "Device"),
        "case_volunteer" => ("Zuteilung eines Falls", "Case assignment"),
        "coordinator" => ("Koordinationskonto", "Coordinator account"),
        "organisation" => ("Organisation", "Organisation"),
        "report" => ("Bericht", "Report"),
        "push_subscription" => ("Benachrichtigung", "Notification"),
        other => return other.to_owned(),
    };
    l.t(de, en).to_owned()
}

/// Who wrote an audit line, by kind.
pub fn audit_actor_kind(l: Lang, kind: &str) -> String {
    let (de, en) = match kind {
        "coordinator" => ("Koordination", "Coordinator"),
        "device" => ("Gerät", "Device"),
        "system" => ("System", "System"),
        other => return other.to_owned(),
    };
    l.t(de, en).to_owned()
}

/// The kind of a change in a case's history, in words; `None`: a change our edits do not
/// make (another client's), whose own message is not shown as it could say anything.
pub fn change_kind(l: Lang, kind: Option<ChangeKind>) -> &'static str {
    use ChangeKind::*;
    let Some(kind) = kind else {
        return l.t("sonstige Änderung", "other change");
    };
    let (de, en) = match kind {
        CreateCase => ("Fall angelegt", "case created"),
        SetStatus => ("Status geändert", "status changed"),
        SetTopic => ("Thema geändert", "topic changed"),
        SetLabel => ("Kürzel geändert", "label changed"),
        SetLanguages => ("Sprachen geändert", "languages changed"),
        AddNote => ("Notiz hinzugefügt", "note added"),
        EditNote => ("Notiz bearbeitet", "note edited"),
        DeleteNote => ("Notiz gelöscht", "note deleted"),
        AddAppointment => ("Termin hinzugefügt", "appointment added"),
        UpdateAppointment => ("Termin geändert", "appointment changed"),
        LogHours => ("Stunden eingetragen", "hours logged"),
        DeleteHours => ("Stunden gelöscht", "hours deleted"),
        CreateSchedule => ("Kalender angelegt", "schedule created"),
        SetAvailability => ("Verfügbarkeit geändert", "availability changed"),
        SetKind => ("Art der Begleitung geändert", "kind changed"),
        CorrectHours => ("Stunden berichtigt", "hours corrected"),
        RemoveHours => ("Stunden entfernt", "hours removed"),
        NewGeneration => (
            "neu gefasst (Eintrag gelöscht oder Verlauf gekürzt)",
            "written anew (entry erased or history compacted)",
        ),
        ReplayEdits => (
            "offline Geschriebenes übernommen",
            "offline edits carried over",
        ),
    };
    l.t(de, en)
}

/// The kinds of hours the apps write (a short word), in words.
pub fn hours_kind(l: Lang, code: &str) -> String {
    let (de, en) = match code {
        "begleitung" => ("Begleitung", "Accompaniment"),
        "uebersetzung" => ("Übersetzung", "Translation"),
        "telefonat" => ("Telefonat", "Phone call"),
        "beratung" => ("Beratung", "Advice"),
        "fahrt" => ("Fahrt", "Travel"),
        "sonstiges" => ("Sonstiges", "Other"),
        other => return other.to_owned(),
    };
    l.t(de, en).to_owned()
}

/// The kinds of institution a request may come from: the store's one list.
pub use crate::store::INSTITUTION_KINDS;

pub fn institution_kind(l: Lang, code: &str) -> String {
    let (de, en) = match code {
        "behoerde" => ("Behörde", "Authority"),
        "jobcenter" => ("Jobcenter", "Job centre"),
        "auslaenderbehoerde" => ("Ausländerbehörde", "Immigration office"),
        "beratungsstelle" => ("Beratungsstelle", "Counselling service"),
        "schule" => ("Schule", "School"),
        "kita" => ("Kita", "Day care"),
        "arztpraxis" => ("Arztpraxis, Klinik", "Doctor, clinic"),
        "migrantin" => ("Privatperson (Migrant:in)", "Private person (migrant)"),
        "sonstige" => ("Sonstige", "Other"),
        other => return other.to_owned(),
    };
    l.t(de, en).to_owned()
}

pub fn urgency(l: Lang, code: &str) -> String {
    match code {
        "dringend" => l.t("dringend", "urgent").to_owned(),
        _ => l.t("normal", "normal").to_owned(),
    }
}

/// Languages offered as checkboxes in forms; others can be typed as ISO codes.
pub const COMMON_LANGUAGES: [&str; 18] = [
    "ar", "fa", "ps", "tr", "ku", "uk", "ru", "ro", "bg", "pl", "sq", "ti", "so", "fr", "en", "es",
    "de", "am",
];

pub fn language(l: Lang, code: &str) -> String {
    let (de, en) = match code {
        "ar" => ("Arabisch", "Arabic"),
        "fa" => ("Persisch (Farsi/Dari)", "Persian (Farsi/Dari)"),
        "ps" => ("Paschtu", "Pashto"),
        "tr" => ("Türkisch", "Turkish"),
        "ku" => ("Kurdisch", "Kurdish"),
        "uk" => ("Ukrainisch", "Ukrainian"),
        "ru" => ("Russisch", "Russian"),
        "ro" => ("Rumänisch", "Romanian"),
        "bg" => ("Bulgarisch", "Bulgarian"),
        "pl" => ("Polnisch", "Polish"),
        "sq" => ("Albanisch", "Albanian"),
        "ti" => ("Tigrinya", "Tigrinya"),
        "so" => ("Somali", "Somali"),
        "fr" => ("Französisch", "French"),
        "en" => ("Englisch", "English"),
        "es" => ("Spanisch", "Spanish"),
        "de" => ("Deutsch", "German"),
        "am" => ("Amharisch", "Amharic"),
        "it" => ("Italienisch", "Italian"),
        "sr" => ("Serbisch", "Serbian"),
        "hr" => ("Kroatisch", "Croatian"),
        "bs" => ("Bosnisch", "Bosnian"),
        "hy" => ("Armenisch", "Armenian"),
        "ka" => ("Georgisch", "Georgian"),
        "ur" => ("Urdu", "Urdu"),
        "hi" => ("Hindi", "Hindi"),
        "vi" => ("Vietnamesisch", "Vietnamese"),
        "zh" => ("Chinesisch", "Chinese"),
        "pt" => ("Portugiesisch", "Portuguese"),
        "el" => ("Griechisch", "Greek"),
        other => return other.to_uppercase(),
    };
    l.t(de, en).to_owned()
}

pub fn languages(l: Lang, codes: &[String]) -> String {
    codes
        .iter()
        .map(|c| language(l, c))
        .collect::<Vec<_>>()
        .join(", ")
}

pub fn weekday(l: Lang, n: u8) -> &'static str {
    const DE: [&str; 7] = [
        "Montag",
        "Dienstag",
        "Mittwoch",
        "Donnerstag",
        "Freitag",
        "Samstag",
        "Sonntag",
    ];
    const EN: [&str; 7] = [
        "Monday",
        "Tuesday",
        "Wednesday",
        "Thursday",
        "Friday",
        "Saturday",
        "Sunday",
    ];
    let i = usize::from(n.clamp(1, 7) - 1);
    match l {
        Lang::De => DE[i],
        Lang::En => EN[i],
    }
}

pub fn month_name(l: Lang, month: i8) -> &'static str {
    const DE: [&str; 12] = [
        "Januar",
        "Februar",
        "März",
        "April",
        "Mai",
        "Juni",
        "Juli",
        "August",
        "September",
        "Oktober",
        "November",
        "Dezember",
    ];
    const EN: [&str; 12] = [
        "January",
        "February",
        "March",
        "April",
        "May",
        "June",
        "July",
        "August",
        "September",
        "October",
        "November",
        "December",
    ];
    let i = usize::try_from(month.clamp(1, 12) - 1).unwrap_or(0);
    match l {
        Lang::De => DE[i],
        Lang::En => EN[i],
    }
}

pub fn tz() -> TimeZone {
    TimeZone::get(crate::matching::LOCAL_TZ).unwrap_or(TimeZone::UTC)
}

pub fn zoned(ms: i64) -> Option<jiff::Zoned> {
    Some(Timestamp::from_millisecond(ms).ok()?.to_zoned(tz()))
}

/// A moment in local time: "04.03.2026, 14:00" / "2026-03-04 14:00".
pub fn datetime(l: Lang, ms: i64) -> String {
    zoned(ms)
        .map(|z| match l {
            Lang::De => z.strftime("%d.%m.%Y, %H:%M").to_string(),
            Lang::En => z.strftime("%Y-%m-%d %H:%M").to_string(),
        })
        .unwrap_or_default()
}

pub fn date(l: Lang, ms: i64) -> String {
    zoned(ms)
        .map(|z| match l {
            Lang::De => z.strftime("%d.%m.%Y").to_string(),
            Lang::En => z.strftime("%Y-%m-%d").to_string(),
        })
        .unwrap_or_default()
}

/// A `YYYY-MM-DD` date as this language writes it.
pub fn iso_date(l: Lang, ymd: &str) -> String {
    match (l, ymd.split('-').collect::<Vec<_>>().as_slice()) {
        (Lang::De, [y, m, d]) => format!("{d}.{m}.{y}"),
        _ => ymd.to_owned(),
    }
}

pub fn time_of_day(ms: i64) -> String {
    zoned(ms)
        .map(|z| z.strftime("%H:%M").to_string())
        .unwrap_or_default()
}

/// Start and end of an appointment: one date, two times when on the same day.
pub fn window(l: Lang, start: i64, end: i64) -> String {
    match (zoned(start), zoned(end)) {
        (Some(a), Some(b)) if a.date() == b.date() => {
            format!("{}–{}", datetime(l, start), time_of_day(end))
        }
        _ => format!("{} – {}", datetime(l, start), datetime(l, end)),
    }
}

/// Minutes as hours and minutes: "2:30 h".
pub fn minutes(m: i64) -> String {
    format!("{}:{:02} h", m / 60, m % 60)
}

pub fn ago_days(l: Lang, now: i64, then: i64) -> String {
    let days = (now - then).max(0) / 86_400_000;
    match (l, days) {
        (Lang::De, 0) => "heute".into(),
        (Lang::De, 1) => "vor 1 Tag".into(),
        (Lang::De, n) => format!("vor {n} Tagen"),
        (Lang::En, 0) => "today".into(),
        (Lang::En, 1) => "1 day ago".into(),
        (Lang::En, n) => format!("{n} days ago"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn accept_language_picks_the_preferred_of_ours() {
        assert_eq!(
            from_accept_language("en-GB,en;q=0.9,de;q=0.8"),
            Some(Lang::En)
        );
        assert_eq!(
            from_accept_language("fr-FR, de;q=0.5, en;q=0.4"),
            Some(Lang::De)
        );
        assert_eq!(from_accept_language("fr, it"), None);
        assert_eq!(from_accept_language("en;q=0, de-AT"), Some(Lang::De));
    }

    #[test]
    fn every_audit_code_has_words() {
        for l in [Lang::De, Lang::En] {
            for code in AUDIT_ACTIONS {
                assert_ne!(audit_event(l, code), code, "{code} has no words in {l:?}");
                assert_ne!(audit_action(l, code), code, "{code} has no words in {l:?}");
            }
            for kind in AUDIT_SUBJECTS {
                assert_ne!(audit_subject(l, kind), kind, "{kind} has no words in {l:?}");
            }
        }
        let mut words: Vec<String> = AUDIT_ACTIONS
            .iter()
            .map(|c| audit_event(Lang::De, c))
            .collect();
        words.sort();
        words.dedup();
        assert_eq!(
            words.len(),
            AUDIT_ACTIONS.len(),
            "the filter tells them apart"
        );
    }

    #[test]
    fn every_topic_has_words() {
        for t in TOPICS {
            for l in [Lang::De, Lang::En] {
                assert_ne!(topic(l, t), t, "{t} has no words in {l:?}");
            }
        }
    }

    #[test]
    #[allow(clippy::unwrap_used)]
    fn every_refusal_of_the_shared_rules_has_words() {
        use crate::store::{NewRequest, Request, RequestDraft, Slot, Volunteer};
        let draft = RequestDraft {
            starts_at: Some(3_600_000),
            ends_at: Some(7_200_000),
            ..RequestDraft::default()
        };
        let refused_request = NewRequest::check(draft.clone(), "coordinator", Some(i64::MAX))
            .unwrap_err()
            .0
            .into_iter()
            .chain(
                NewRequest::check(
                    RequestDraft {
                        starts_at: None,
                        ..draft
                    },
                    "coordinator",
                    None,
                )
                .unwrap_err()
                .0,
            )
            .map(|(_, why)| why.reason());
        let refused = [
            Request::check_window(0.into(), (25 * 3_600_000).into())
                .unwrap_err()
                .reason(),
            Request::check_window(1.into(), 0.into())
                .unwrap_err()
                .reason(),
            Request::check_urgency("sofort").unwrap_err().reason(),
            Volunteer::check_name(" ").unwrap_err().reason(),
            Volunteer::check_name(&"x".repeat(101))
                .unwrap_err()
                .reason(),
            Volunteer::check_name("a\u{7}b").unwrap_err().reason(),
            Volunteer::check_languages(&[]).unwrap_err().reason(),
            Volunteer::check_languages(&vec!["de".to_owned(); 31])
                .unwrap_err()
                .reason(),
            Volunteer::check_languages(&["xx".to_owned()])
                .unwrap_err()
                .reason(),
            Volunteer::check_topics(&["kochen".to_owned()])
                .unwrap_err()
                .reason(),
            Volunteer::check_availability(&vec![
                Slot {
                    weekday: 1,
                    from: "10:00".into(),
                    to: "11:00".into()
                };
                51
            ])
            .unwrap_err()
            .reason(),
            Volunteer::check_date("4.3.2026").unwrap_err().reason(),
            Volunteer::check_trainings(&vec![
                crate::store::Training {
                    name: "Basislehrgang".into(),
                    completed_on: "2026-03-04".into(),
                };
                101
            ])
            .unwrap_err()
            .reason(),
        ];
        let slots = [
            (0, "10:00", "11:00"),
            (1, "1000", "11:00"),
            (1, "11:00", "10:00"),
        ];
        let refused =
            refused
                .into_iter()
                .chain(refused_request)
                .chain(slots.map(|(weekday, from, to)| {
                    Slot {
                        weekday,
                        from: from.into(),
                        to: to.into(),
                    }
                    .check()
                    .unwrap_err()
                    .reason()
                }));
        let fallback = invalid(Lang::De, "?", "");
        for (code, detail) in refused {
            for l in [Lang::De, Lang::En] {
                let words = invalid(l, code, &detail);
                assert_ne!(words, invalid(l, "?", ""), "{code}");
                assert!(words.contains(&detail), "{code}: {words}");
            }
        }
        assert_eq!(fallback, "Bitte prüfen Sie diese Angabe.");
    }

    #[test]
    fn times_are_local() {
        // 13:00 UTC on 2026-03-04 is 14:00 in Berlin.
        assert_eq!(datetime(Lang::De, 1_772_629_200_000), "04.03.2026, 14:00");
        assert_eq!(datetime(Lang::En, 1_772_629_200_000), "2026-03-04 14:00");
        assert_eq!(
            window(Lang::De, 1_772_629_200_000, 1_772_629_200_000 + 5_400_000),
            "04.03.2026, 14:00–15:30"
        );
        assert_eq!(minutes(150), "2:30 h");
        assert_eq!(Lang::De.decimal(12.34), "12,3");
    }
}
