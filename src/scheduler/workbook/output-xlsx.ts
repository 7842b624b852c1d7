/**
 * The parts of the output workbook besides its rows: package and workbook relationships, the
 * one sheet's frame (frozen header row, column widths) and the shared styles whose ids the
 * rendered rows use (CELL_STYLE in src/shared/sheet/rows.ts: the order of `cellXfs` here).
 */
import { CELL_STYLE, DATE_FORMATS, renderHeaderRow } from "../../shared/sheet/rows.ts";
import { escapeXml } from "../../shared/xml.ts";

const DECLARATION = '<?xml version="1.0" encoding="UTF-8" standalone="yes"?>\n';
const MAIN = "http://schemas.openxmlformats.org/spreadsheetml/2006/main";
const DOC_RELS = "http://schemas.openxmlformats.org/officeDocument/2006/relationships";
const PKG_RELS = "http://schemas.openxmlformats.org/package/2006/relationships";

export const SHEET_PATH = "xl/worksheets/sheet1.xml";

/** Every part but the sheet, by path, in the order they are written. */
export function workbookParts(sheetName: string): Array<[path: string, xml: string]> {
  return [
    [
      "[Content_Types].xml",
      `${DECLARATION}<Types xmlns="http://schemas.openxmlformats.org/package/2006/content-types">` +
        '<Default Extension="rels" ContentType="application/vnd.openxmlformats-package.relationships+xml"/>' +
        '<Default Extension="xml" ContentType="application/xml"/>' +
        '<Override PartName="/xl/workbook.xml" ContentType="application/vnd.openxmlformats-officedocument.spreadsheetml.sheet.main+xml"/>' +
        `<Override PartName="/${SHEET_PATH}" ContentType="application/vnd.openxmlformats-officedocument.spreadsheetml.worksheet+xml"/>` +
        '<Override PartName="/xl/styles.xml" ContentType="application/vnd.openxmlformats-officedocument.spreadsheetml.styles+xml"/>' +
        "</Types>",
    ],
    [
      "_rels/.rels",
      `${DECLARATION}<Relationships xmlns="${PKG_RELS}">` +
        `<Relationship Id="rId1" Type="${DOC_RELS}/officeDocument" Target="xl/workbook.xml"/>` +
        "</Relationships>",
    ],
    [
      "xl/workbook.xml",
      `${DECLARATION}<workbook xmlns="${MAIN}" xmlns:r="${DOC_RELS}">` +
        '<bookViews><workbookView xWindow="0" yWindow="0" windowWidth="12000" windowHeight="24000"/></bookViews>' +
        `<sheets><sheet name="${escapeXml(sheetName)}" sheetId="1" r:id="rId1"/></sheets>` +
        "</workbook>",
    ],
    [
      "xl/_rels/workbook.xml.rels",
      `${DECLARATION}<Relationships xmlns="${PKG_RELS}">` +
        `<Relationship Id="rId1" Type="${DOC_RELS}/worksheet" Target="worksheets/sheet1.xml"/>` +
        `<Relationship Id="rId2" Type="${DOC_RELS}/styles" Target="styles.xml"/>` +
        "</Relationships>",
    ],
    ["xl/styles.xml", stylesXml()],
  ];
}

/** The styles: cellXfs in CELL_STYLE order (plain, date, date-time, bold header). */
function stylesXml(): string {
  const font = '<sz val="11"/><name val="Calibri"/><family val="2"/>';
  const xf = (numFmtId: number, fontId: number, apply: string) =>
    `<xf numFmtId="${numFmtId}" fontId="${fontId}" fillId="0" borderId="0" xfId="0"${apply}/>`;
  const xfs: string[] = [];
  xfs[CELL_STYLE.plain] = xf(0, 0, "");
  xfs[CELL_STYLE.date] = xf(164, 0, ' applyNumberFormat="1"');
  xfs[CELL_STYLE.dateTime] = xf(165, 0, ' applyNumberFormat="1"');
  xfs[CELL_STYLE.header] = xf(0, 1, ' applyFont="1"');
  return (
    `${DECLARATION}<styleSheet xmlns="${MAIN}">` +
    `<numFmts count="2"><numFmt numFmtId="164" formatCode="${DATE_FORMATS.date}"/>` +
    `<numFmt numFmtId="165" formatCode="${DATE_FORMATS.dateTime}"/></numFmts>` +
    `<fonts count="2"><font>${font}</font><font><b/>${font}</font></fonts>` +
    '<fills count="2"><fill><patternFill patternType="none"/></fill><fill><patternFill patternType="gray125"/></fill></fills>' +
    '<borders count="1"><border><left/><right/><top/><bottom/><diagonal/></border></borders>' +
    '<cellStyleXfs count="1"><xf numFmtId="0" fontId="0" fillId="0" borderId="0"/></cellStyleXfs>' +
    `<cellXfs count="${xfs.length}">${xfs.join("")}</cellXfs>` +
    '<cellStyles count="1"><cellStyle name="Normal" xfId="0" builtinId="0"/></cellStyles>' +
    "</styleSheet>"
  );
}

/**
 * The sheet up to its first data row: the frozen header row, the column widths (rows stream by,
 * so widths come from the names alone), and the header row itself.
 */
export function sheetHead(names: readonly string[], width: (name: string) => number): string {
  const cols = names
    .map((name, k) => `<col min="${k + 1}" max="${k + 1}" width="${width(name)}" customWidth="1"/>`)
    .join("");
  return (
    `${DECLARATION}<worksheet xmlns="${MAIN}" xmlns:r="${DOC_RELS}">` +
    '<sheetViews><sheetView workbookViewId="0">' +
    '<pane ySplit="1" topLeftCell="A2" activePane="bottomLeft" state="frozen"/>' +
    '<selection pane="bottomLeft" activeCell="A2" sqref="A2"/>' +
    "</sheetView></sheetViews>" +
    '<sheetFormatPr defaultRowHeight="15"/>' +
    (cols === "" ? "" : `<cols>${cols}</cols>`) +
    `<sheetData>${renderHeaderRow(names)}`
  );
}

/** The sheet after its last row. */
export const SHEET_TAIL = "</sheetData></worksheet>";
