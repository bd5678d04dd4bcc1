"""`ourcambridge`: the one command line of the bot."""

from __future__ import annotations

import argparse
import asyncio
import ipaddress
import logging
import sys
from collections.abc import Sequence
from datetime import date, datetime, time
from pathlib import Path

from pydantic import ValidationError

from bot.config import Settings

logger = logging.getLogger("ourcambridge")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="ourcambridge",
        description=(
            "The Our Cambridge Teams bot. Configuration comes from the environment and an "
            "optional .env file in the working directory (see .env.example)."
        ),
    )
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    serve = commands.add_parser(
        "serve",
        help="serve the bot over HTTP (POST /api/messages, GET /healthz, GET /readyz)",
        description="Serve the bot. The database must be migrated first (ourcambridge db upgrade).",
    )
    serve.add_argument("--host", help="address to listen on (default: HOST or 127.0.0.1)")
    serve.add_argument("--port", type=int, help="port to listen on (default: PORT or 3978)")

    db = commands.add_parser("db", help="manage the database schema (Alembic migrations)")
    db_commands = db.add_subparsers(dest="db_command", required=True, metavar="DB_COMMAND")
    db_commands.add_parser(
        "upgrade",
        help="migrate DATABASE_URL to the latest schema (safe to run on every deploy)",
        description="Apply every Alembic migration not yet applied to DATABASE_URL.",
    )

    commands.add_parser(
        "seed",
        help="load the programme's workstreams, projects, updates and principles (idempotent)",
        description=(
            "Load storage/data/programme.yaml into DATABASE_URL. Running it again changes "
            "nothing; updates posted from Teams are kept."
        ),
    )

    roster = commands.add_parser(
        "roster", help="manage the Making It Real roster (Change Makers, Change Leaders, admins)"
    )
    roster_commands = roster.add_subparsers(
        dest="roster_command", required=True, metavar="ROSTER_COMMAND"
    )
    roster_import = roster_commands.add_parser(
        "import",
        help="add or update the people of a roster CSV file (see docs/roster-example.csv)",
        description=(
            "Import a roster CSV file (UTF-8) with the header name,email,role,leader_email,"
            "service_area. role is change_maker, change_leader or admin; a change_maker's "
            "leader_email names a change_leader of the file or of the roster already. People "
            "are matched by email, so importing again updates them; people of the roster not "
            "in the file are left as they are. Every bad row is reported with its line number "
            "and then nothing is imported. Exit status: 0 imported, 1 bad rows, 2 the file "
            "cannot be read."
        ),
    )
    roster_import.add_argument("file", type=Path, metavar="FILE", help="the roster CSV file")
    roster_commands.add_parser(
        "install-app",
        help="install the Teams app for Change Makers the bot cannot message yet (Graph)",
        description=(
            "Install the Teams app, through Microsoft Graph, for every roster Change Maker "
            "the bot has no 1:1 chat with, so its reminders reach them, and print how many "
            "were installed, already had it or are not in the directory. Needs "
            "GRAPH_ENABLED=true, the app in the organisation's catalogue and the application "
            "permissions AppCatalog.Read.All and TeamsAppInstallation.ReadWriteSelfForUser.All "
            "(docs/deploy.md). Exit status: 0 done, 1 Graph is not set up or refused."
        ),
    )

    ideas_parser = commands.add_parser("ideas", help="small improvement ideas")
    ideas_commands = ideas_parser.add_subparsers(
        dest="ideas_command", required=True, metavar="IDEAS_COMMAND"
    )
    export = ideas_commands.add_parser(
        "export",
        help="write every idea with its history as CSV or XLSX",
        description=(
            "Write every idea with its status history. Anonymous ideas have a blank "
            "submitter. CSV goes to standard output unless --output is given; XLSX needs "
            "--output."
        ),
    )
    export.add_argument("--format", choices=("csv", "xlsx"), default="csv")
    export.add_argument("--output", type=Path, metavar="FILE", help="the file to write")

    reminders = commands.add_parser(
        "reminders", help="Making It Real reminders (the bot also runs them every morning)"
    )
    reminders_commands = reminders.add_subparsers(
        dest="reminders_command", required=True, metavar="REMINDERS_COMMAND"
    )
    reminders_run = reminders_commands.add_parser(
        "run",
        help="send the reminders due today now; running it again the same day sends nothing more",
        description=(
            "Work out today's reminders (sessions to log, Change Makers with nothing scheduled, "
            "overdue actions), put them in the outbox and send them. Each reminder has a key, "
            "so running this twice, or alongside the bot's own morning run, sends it once. "
            "People the bot cannot reach (they never opened the app) are counted, not skipped "
            "silently."
        ),
    )
    reminders_run.add_argument(
        "--date",
        type=date.fromisoformat,
        metavar="YYYY-MM-DD",
        help="the day to run for (default: today in TIMEZONE)",
    )

    outbox_parser = commands.add_parser(
        "outbox", help="the queue of messages the bot sends on its own"
    )
    outbox_commands = outbox_parser.add_subparsers(
        dest="outbox_command", required=True, metavar="OUTBOX_COMMAND"
    )
    outbox_commands.add_parser(
        "status",
        help="pending, sending, sent and failed counts, and the latest failures",
        description=(
            "Show how many messages are pending (new or waiting to be retried), being sent, "
            "sent and failed, how many may have reached Teams twice (a worker died after "
            "sending and before recording it), and the latest failures with their reasons."
        ),
    )

    digest_parser = commands.add_parser("digest", help="the weekly digest posted to channels")
    digest_commands = digest_parser.add_subparsers(
        dest="digest_command", required=True, metavar="DIGEST_COMMAND"
    )
    send = digest_commands.add_parser(
        "send",
        help="queue the digests that are due (with --now: this week's for every channel)",
        description=(
            "Put in the outbox the digest of every subscribed channel whose weekly time has "
            "come (missed by less than a day) and that has not had this week's; with --now, "
            "this week's digest of every subscribed channel, whatever its day and time. A "
            "channel never gets two digests in one week. The serving bot delivers them."
        ),
    )
    send.add_argument(
        "--now", action="store_true", help="queue this week's digest for every channel now"
    )
    preview = digest_commands.add_parser(
        "preview",
        help="write a digest card's JSON (an Adaptive Card) to standard output",
        description=(
            "Write the digest card as JSON: by default the one a channel would get now "
            "(the seven days to now), or with --week the one covering that ISO week, Monday "
            "to Sunday in TIMEZONE."
        ),
    )
    preview.add_argument(
        "--print",
        action="store_true",
        dest="print_card",
        help="write the card JSON to standard output (the default; kept for scripts)",
    )
    preview.add_argument("--week", metavar="YYYY-Www", help="the ISO week, e.g. 2022-W24")

    privacy = commands.add_parser(
        "privacy",
        help="personal data: export, erasure and retention purge (see docs/privacy.md)",
    )
    privacy_commands = privacy.add_subparsers(
        dest="privacy_command", required=True, metavar="PRIVACY_COMMAND"
    )
    purge = privacy_commands.add_parser(
        "purge",
        help="delete or anonymise what is past its retention period (the bot does it nightly)",
        description=(
            "Apply the retention periods (the RETENTION_* settings, docs/privacy.md): delete "
            "or anonymise every record past its period, record the counts in the audit trail "
            "(retention.purge) and print them per record type. The bot runs this every night "
            "at RETENTION_PURGE_AT; running it again straight away changes nothing. With "
            "--dry-run, print what it would do and change nothing."
        ),
    )
    purge.add_argument(
        "--dry-run", action="store_true", help="count what would be purged; change nothing"
    )
    privacy_export = privacy_commands.add_parser(
        "export",
        help="write everything held about a person as JSON (a subject access request)",
        description=(
            "Write as JSON everything the bot holds about the person with this email (matched "
            "whatever its case): profile, roles, Making It Real sessions and actions, ideas "
            '(anonymous ones included, marked "anonymous": true), supports, idea status '
            "changes they made, project updates, conversation references, dialog state and "
            "outbox messages. To standard output unless --output is given. The export is "
            "recorded in the audit trail (privacy.export). Exit status: 0 written, 1 nobody "
            "with that email is held."
        ),
    )
    privacy_export.add_argument("--email", required=True, metavar="ADDRESS")
    privacy_export.add_argument("--output", type=Path, metavar="FILE", help="the file to write")
    privacy_erase = privacy_commands.add_parser(
        "erase",
        help="erase a person: remove or anonymise everything held about them",
        description=(
            "Erase the person with this email under the policy in docs/privacy.md: their "
            "profile, supports, conversations, dialog state and messages are removed; their "
            "ideas and the figures of sessions they held are kept without them. Without "
            "--yes, prints what would be erased and asks for confirmation (refused when not "
            "run in a terminal). Recorded in the audit trail (privacy.erase). Running it again "
            "changes nothing. Exit status: 0 erased or nothing held, 1 not confirmed, 2 no "
            "terminal to confirm in."
        ),
    )
    privacy_erase.add_argument("--email", required=True, metavar="ADDRESS")
    privacy_erase.add_argument(
        "--yes", action="store_true", help="erase without asking for confirmation"
    )

    audit_parser = commands.add_parser(
        "audit", help="the audit trail of admin actions and status changes"
    )
    audit_commands = audit_parser.add_subparsers(
        dest="audit_command", required=True, metavar="AUDIT_COMMAND"
    )
    audit_list = audit_commands.add_parser(
        "list",
        help="the latest audit entries, newest first",
        description=(
            "List audit entries, newest first: when, what (idea.status, roster.import, "
            "privacy.erase...), who (a person id, the command line or the system), to what "
            "(an id) and a small detail of counts and statuses. Entries hold no names, emails "
            "or text."
        ),
    )
    audit_list.add_argument(
        "--since",
        type=date.fromisoformat,
        metavar="YYYY-MM-DD",
        help="only entries from that day on (midnight in TIMEZONE)",
    )
    audit_list.add_argument(
        "--action",
        metavar="NAME",
        help="only this action (idea.status), or a family of them ending in a dot (idea.)",
    )
    audit_list.add_argument(
        "--limit", type=int, default=100, metavar="N", help="at most N entries (default 100)"
    )
    audit_list.add_argument("--format", choices=("text", "json"), default="text")

    manifest_parser = commands.add_parser("manifest", help="the Teams app package")
    manifest_commands = manifest_parser.add_subparsers(
        dest="manifest_command", required=True, metavar="MANIFEST_COMMAND"
    )
    manifest_build = manifest_commands.add_parser(
        "build",
        help="write the Teams app package (appmanifest/build/ourcambridge.zip)",
        description=(
            "Fill in appmanifest/manifest.json.j2 from the settings (MicrosoftAppId, "
            "TEAMS_APP_ID, TEAMS_APP_VERSION, BOT_DOMAIN, DEVELOPER_*), check it against the "
            "Teams manifest schema v1.30 and Teams' rules, and write the zip to upload to Teams "
            "(manifest.json, color.png, outline.png). No secret is needed. Prints the zip's "
            "path. Exit status: 0 written, 1 the manifest is not valid (each problem named by "
            "its JSON path; nothing is written), 2 a configuration error."
        ),
    )
    manifest_build.add_argument(
        "--app-id", metavar="GUID", help="the Azure Bot's app id (default: MicrosoftAppId)"
    )
    manifest_build.add_argument(
        "--output",
        type=Path,
        metavar="PATH",
        help="the zip file to write (a name ending .zip), or a directory to write "
        "ourcambridge.zip in",
    )
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    if args.command == "manifest":
        # Before the settings below, which refuse an app id without its secret: the package
        # needs only ids, so it can be built where no secret is.
        return _build_manifest(app_id=args.app_id, output=args.output)
    try:
        settings = Settings()
    except ValidationError as error:
        sys.stderr.write(f"ourcambridge: configuration error:\n{error}\n")
        return 2
    from bot.logs import configure_logging

    configure_logging(settings.log_level, settings.log_format)
    if args.command == "serve":
        return _serve(settings, host=args.host, port=args.port)
    if args.command == "db":
        from storage import migrate

        migrate.upgrade(settings.database_url)
        logger.info("Database schema is up to date")
        return 0
    if args.command == "seed":
        return asyncio.run(_seed(settings))
    if args.command == "roster" and args.roster_command == "install-app":
        return asyncio.run(_install_app(settings))
    if args.command == "roster":
        return asyncio.run(_import_roster(settings, args.file))
    if args.command == "ideas":
        if args.format == "xlsx" and args.output is None:
            sys.stderr.write("ourcambridge: --format xlsx needs --output FILE\n")
            return 2
        return asyncio.run(_export_ideas(settings, args.format, args.output))
    if args.command == "reminders":
        return asyncio.run(_run_reminders(settings, args.date))
    if args.command == "outbox":
        return asyncio.run(_outbox_status(settings))
    if args.command == "digest" and args.digest_command == "send":
        return asyncio.run(_send_digests(settings, now=args.now))
    if args.command == "digest":
        return asyncio.run(_preview_digest(settings, args.week))
    if args.command == "privacy" and args.privacy_command == "purge":
        return asyncio.run(_purge(settings, dry_run=args.dry_run))
    if args.command == "privacy" and args.privacy_command == "export":
        return asyncio.run(_export_person(settings, args.email, args.output))
    if args.command == "privacy" and args.privacy_command == "erase":
        return asyncio.run(_erase_person(settings, args.email, confirmed=args.yes))
    if args.command == "audit":
        if args.limit < 1:
            sys.stderr.write("ourcambridge: --limit must be at least 1\n")
            return 2
        return asyncio.run(
            _list_audit(
                settings,
                since=args.since,
                action=args.action,
                limit=args.limit,
                as_json=args.format == "json",
            )
        )
    return 2


def _serve(settings: Settings, *, host: str | None, port: int | None) -> int:
    from aiohttp import web

    from bot.app import create_app, freeze_startup_objects
    from bot.logs import AccessLog

    host = host or settings.host
    port = port or settings.port
    if not settings.authentication_enabled:
        if not _is_loopback(host) and not settings.allow_unauthenticated_network:
            sys.stderr.write(
                f"ourcambridge: refusing to serve on {host} with authentication OFF "
                "(MicrosoftAppId is empty). Set MicrosoftAppId, listen on 127.0.0.1, or set "
                "ALLOW_UNAUTHENTICATED_NETWORK=true on an isolated test network.\n"
            )
            return 2
        logger.warning(
            "MicrosoftAppId is empty: authentication is OFF. Use this only on your own machine."
        )
    app = create_app(settings)
    freeze_startup_objects()
    web.run_app(app, host=host, port=port, print=None, access_log_class=AccessLog)
    return 0


def _is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


async def _seed(settings: Settings) -> int:
    from storage.db import create_engine, session_factory
    from storage.seed import seed_programme

    engine = create_engine(settings.database_url)
    try:
        await seed_programme(session_factory(engine))  # logs what it created and updated
    finally:
        await engine.dispose()
    return 0


async def _import_roster(settings: Settings, path: Path) -> int:
    from storage.db import create_engine, session_factory
    from storage.roster import RosterInvalid, RosterUnreadable, import_roster_file

    engine = create_engine(settings.database_url)
    try:
        await import_roster_file(session_factory(engine), path)  # logs what it did
    except RosterUnreadable as error:
        sys.stderr.write(f"ourcambridge: {error}\n")
        return 2
    except RosterInvalid as invalid:
        sys.stderr.writelines(f"{error}\n" for error in invalid.errors)
        sys.stderr.write(
            f"ourcambridge: {path}: {len(invalid.errors)} problem"
            f"{'' if len(invalid.errors) == 1 else 's'}; nothing was imported\n"
        )
        return 1
    finally:
        await engine.dispose()
    return 0


async def _install_app(settings: Settings) -> int:
    from bot.graph import GraphClient, GraphError, install_for_change_makers
    from bot.identity import IdentityError, build_identity
    from storage.db import create_engine, session_factory

    identity = build_identity(settings)
    if not settings.graph_available or identity is None:
        sys.stderr.write(
            "ourcambridge: Microsoft Graph is not set up: set GRAPH_ENABLED=true and the bot's "
            "MicrosoftAppId (see docs/deploy.md)\n"
        )
        return 1
    graph = GraphClient(identity, base_url=settings.graph_url)
    engine = create_engine(settings.database_url)
    try:
        report = await install_for_change_makers(
            graph,
            session_factory(engine),
            teams_app_id=settings.manifest_app_id,
            tenant_id=settings.microsoft_app_tenant_id or None,
            actor="cli",
        )
    except (GraphError, IdentityError) as error:
        sys.stderr.write(f"ourcambridge: {error}\n")
        return 1
    finally:
        await graph.close()
        await engine.dispose()
    sys.stdout.write(report.summary() + "\n")
    return 0


async def _export_ideas(settings: Settings, file_format: str, output: Path | None) -> int:
    from storage import ideas, ideas_export
    from storage.db import create_engine, session_factory

    engine = create_engine(settings.database_url)
    try:
        async with session_factory(engine)() as session:
            rows = await ideas.export_rows(session)
    finally:
        await engine.dispose()
    if file_format == "xlsx":
        assert output is not None
        ideas_export.write_xlsx(rows, output)
    elif output is None:
        ideas_export.write_csv(rows, sys.stdout)
    else:
        with output.open("w", encoding="utf-8", newline="") as stream:
            ideas_export.write_csv(rows, stream)
    logger.info("Exported %d ideas", len(rows))
    return 0


async def _run_reminders(settings: Settings, day: date | None) -> int:
    from bot.app import build_worker
    from bot.reminders import run_reminders
    from storage.db import create_engine, session_factory

    engine = create_engine(settings.database_url)
    sessions = session_factory(engine)
    worker = build_worker(settings, sessions)
    try:
        today = day or datetime.now(settings.zone).date()
        run = await run_reminders(sessions, worker, today=today, zone=settings.zone)  # logs it
    finally:
        await worker.close()
        await engine.dispose()
    return 1 if run.delivery.failed else 0


async def _outbox_status(settings: Settings) -> int:
    from storage import outbox
    from storage.db import create_engine, session_factory
    from storage.models import utcnow

    engine = create_engine(settings.database_url)
    try:
        async with session_factory(engine)() as session:
            status = await outbox.status(session, now=utcnow())
    finally:
        await engine.dispose()
    counts = status.counts
    lines = [
        f"pending  {counts['pending']:>8}  ({status.retrying} waiting to be retried)",
        f"sending  {counts['sending']:>8}",
        f"sent     {counts['sent']:>8}",
        f"failed   {counts['failed']:>8}",
        f"may have been sent twice: {status.unknown_outcomes}",
    ]
    if status.oldest_due is not None:
        lines.append(f"oldest message due since: {status.oldest_due.isoformat()}")
    if status.latest_failures:
        lines.append("latest failures:")
        lines.extend(
            f"  #{failure.id} {failure.dedupe_key} to {failure.conversation_id[:40]}: "
            f"{failure.error} ({failure.attempts} attempt{'' if failure.attempts == 1 else 's'}"
            f"{', ' + failure.at.isoformat() if failure.at else ''})"
            for failure in status.latest_failures
        )
    sys.stdout.write("\n".join(lines) + "\n")
    return 0


async def _send_digests(settings: Settings, *, now: bool) -> int:
    from bot.digests import queue_digests_now, queue_due_digests
    from storage.db import create_engine, session_factory
    from storage.models import utcnow

    engine = create_engine(settings.database_url)
    try:
        queue = queue_digests_now if now else queue_due_digests
        run = await queue(session_factory(engine), now=utcnow(), zone=settings.zone)
    finally:
        await engine.dispose()
    sys.stdout.write(
        f"{run.queued} digest(s) queued, {run.already_queued} already queued this week"
        + (f", {run.missed} missed by more than a day" if run.missed else "")
        + "\n"
    )
    return 0


async def _preview_digest(settings: Settings, week: str | None) -> int:
    import json
    from datetime import timedelta

    from bot.digests import digest_card
    from storage.db import create_engine, session_factory
    from storage.digest import week_period
    from storage.models import utcnow

    if week is None:
        end = utcnow()
        start = end - timedelta(days=7)
    else:
        try:
            start, end = week_period(week, settings.zone)
        except ValueError:
            sys.stderr.write(f"ourcambridge: --week {week!r} is not an ISO week like 2022-W24\n")
            return 2
    engine = create_engine(settings.database_url)
    try:
        async with session_factory(engine)() as session:
            activity = await digest_card(session, start=start, end=end, zone=settings.zone)
    finally:
        await engine.dispose()
    card = activity["attachments"][0]["content"]
    sys.stdout.write(json.dumps(card, indent=2, ensure_ascii=False) + "\n")
    return 0


async def _purge(settings: Settings, *, dry_run: bool) -> int:
    from storage import retention
    from storage.db import create_engine, session_factory, transaction
    from storage.models import utcnow

    engine = create_engine(settings.database_url)
    try:
        async with transaction(session_factory(engine)) as session:
            report = await retention.purge(
                session,
                policy=settings.retention_policy,
                now=utcnow(),
                dry_run=dry_run,
                actor="cli",
            )
    finally:
        await engine.dispose()
    sys.stdout.write("\n".join(report.lines()) + "\n")
    return 0


async def _export_person(settings: Settings, email: str, output: Path | None) -> int:
    import json

    from storage import privacy
    from storage.db import create_engine, session_factory, transaction

    engine = create_engine(settings.database_url)
    try:
        async with transaction(session_factory(engine)) as session:
            export = await privacy.export_person(session, email)
    except privacy.PersonNotFound as error:
        sys.stderr.write(f"ourcambridge: {error}: nothing to export\n")
        return 1
    finally:
        await engine.dispose()
    text = json.dumps(export, indent=2, ensure_ascii=False) + "\n"
    if output is None:
        sys.stdout.write(text)
    else:
        await asyncio.to_thread(output.write_text, text, encoding="utf-8")
        sys.stdout.write(f"{output}\n")
    return 0


async def _erase_person(settings: Settings, email: str, *, confirmed: bool) -> int:
    from storage import privacy
    from storage.db import create_engine, session_factory, transaction
    from storage.models import utcnow

    engine = create_engine(settings.database_url)
    sessions = session_factory(engine)
    try:
        if not confirmed:
            async with sessions() as session:
                plan = await privacy.plan_erasure(session, email, now=utcnow())
            if not plan.found:
                sys.stdout.write("\n".join(plan.lines()) + "\n")
                return 0
            sys.stdout.write("Would erase:\n" + "\n".join(plan.lines()) + "\n")
            if not sys.stdin.isatty():
                sys.stderr.write(
                    "ourcambridge: not erased: confirm in a terminal, or run again with --yes\n"
                )
                return 2
            answer = await asyncio.to_thread(input, "Erase this person? Type yes to go on: ")
            if answer.strip().lower() != "yes":
                sys.stderr.write("ourcambridge: not erased\n")
                return 1
        async with transaction(sessions) as session:
            report = await privacy.erase_person(session, email, now=utcnow())
    finally:
        await engine.dispose()
    sys.stdout.write(("Erased:\n" if report.found else "") + "\n".join(report.lines()) + "\n")
    return 0


async def _list_audit(
    settings: Settings, *, since: date | None, action: str | None, limit: int, as_json: bool
) -> int:
    import json

    from storage import audit
    from storage.db import create_engine, session_factory

    start = datetime.combine(since, time(), tzinfo=settings.zone) if since else None
    engine = create_engine(settings.database_url)
    try:
        async with session_factory(engine)() as session:
            entries = await audit.list_entries(session, since=start, action=action, limit=limit)
    finally:
        await engine.dispose()
    if as_json:
        sys.stdout.write(json.dumps([e.as_json() for e in entries], indent=2) + "\n")
        return 0
    for entry in entries:
        who = f"person:{entry.actor_id}" if entry.actor_id is not None else entry.actor
        detail = " ".join(f"{key}={value}" for key, value in entry.detail.items())
        sys.stdout.write(
            f"{entry.at.isoformat(timespec='seconds')}  {entry.action:<20} {who:<14} "
            f"{entry.subject or '-':<20} {detail}".rstrip()
            + "\n"
        )
    if not entries:
        sys.stdout.write("No audit entries.\n")
    return 0


def _build_manifest(*, app_id: str | None, output: Path | None) -> int:
    from bot.manifest import PACKAGE_NAME, ManifestInvalid, PackageSettings, build_package

    try:
        settings = PackageSettings()
    except ValidationError as error:
        sys.stderr.write(f"ourcambridge: configuration error:\n{error}\n")
        return 2
    if app_id is not None:
        settings = settings.model_copy(update={"microsoft_app_id": app_id.strip()})
    out_dir, filename = None, PACKAGE_NAME
    if output is not None and output.suffix.lower() == ".zip" and not output.is_dir():
        out_dir, filename = output.parent, output.name
    elif output is not None:
        out_dir = output
    try:
        path = build_package(settings, out_dir, filename=filename)
    except ManifestInvalid as error:
        sys.stderr.write(f"ourcambridge: {error}\n")
        return 1
    except OSError as error:
        sys.stderr.write(f"ourcambridge: cannot write the package: {error}\n")
        return 1
    sys.stdout.write(f"{path}\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
