package main

import (
	"encoding/xml"
	"fmt"
	"strings"
)

// Layout of the chart, in pixels.
const (
	svgWidth    = 900
	svgMargin   = 20
	svgHeader   = 70  // title and legend
	nameColumn  = 220 // system names, right-aligned before the bars
	barMaxWidth = 540 // the longest bar; leaves room for the value text
	barHeight   = 16
	barPitch    = 22
	panelHead   = 44 // figure label and unit line
	panelPad    = 8  // below the last bar
	panelGap    = 12 // between panels
	colorOurs   = "#2563eb"
	colorBase   = "#9ca3af"
	colorText   = "#111827"
	colorMuted  = "#6b7280"
	colorFrame  = "#e5e7eb"
	fontFamily  = "-apple-system, BlinkMacSystemFont, 'Segoe UI', Helvetica, Arial, sans-serif"
)

// xmlText escapes s for use as XML character data or an attribute value.
func xmlText(s string) string {
	var b strings.Builder
	_ = xml.EscapeText(&b, []byte(s)) // a strings.Builder never fails
	return b.String()
}

// isOurs reports whether system is one of ours rather than a baseline.
func isOurs(system string) bool { return strings.HasPrefix(system, "bucket-csi") }

// panelHeight is the height of the panel of a row with n bars.
func panelHeight(n int) int { return panelHead + n*barPitch + panelPad }

// barsOf returns the systems of rep that reported row, in column order.
func barsOf(rep *Report, row Row) []string {
	var out []string
	for _, sys := range rep.Systems {
		if _, ok := row.Cells[sys]; ok {
			out = append(out, sys)
		}
	}
	return out
}

// SVG renders rep as a standalone SVG chart: one panel per table row, one
// horizontal bar per system that reported the row, its length proportional
// to the median over the row's largest value, a whisker from min to max,
// and the median printed after the bar. Our systems are blue, baselines grey.
func SVG(rep *Report, title string) string {
	height := svgHeader
	for _, row := range rep.Rows {
		height += panelHeight(len(barsOf(rep, row))) + panelGap
	}
	var b strings.Builder
	fmt.Fprintf(&b, `<?xml version="1.0" encoding="UTF-8"?>
<svg xmlns="http://www.w3.org/2000/svg" width="%d" height="%d" viewBox="0 0 %d %d" font-family="%s" font-size="12" fill="%s">
<title>%s</title>
<rect x="0" y="0" width="%d" height="%d" fill="#ffffff"/>
`, svgWidth, height, svgWidth, height, xmlText(fontFamily), colorText, xmlText(title), svgWidth, height)
	writeHeader(&b, title)
	y := svgHeader
	for _, row := range rep.Rows {
		y = writePanel(&b, rep, row, y) + panelGap
	}
	b.WriteString("</svg>\n")
	return b.String()
}

// writeHeader writes the title and the legend.
func writeHeader(b *strings.Builder, title string) {
	x := svgMargin
	fmt.Fprintf(b, `<text x="%d" y="28" font-size="18" font-weight="bold">%s</text>
`, x, xmlText(title))
	fmt.Fprintf(b, `<rect x="%d" y="42" width="14" height="10" fill="%s"/><text x="%d" y="51">bucket-csi</text>
<rect x="%d" y="42" width="14" height="10" fill="%s"/><text x="%d" y="51">baseline</text>
<line x1="%d" y1="47" x2="%d" y2="47" stroke="%s"/><text x="%d" y="51" fill="%s">bar: median; line: min–max of the runs</text>
`, x, colorOurs, x+20, x+110, colorBase, x+130, x+220, x+240, colorText, x+248, colorMuted)
}

// writePanel writes the panel of row with its top at y and returns the y
// just below it.
func writePanel(b *strings.Builder, rep *Report, row Row, y int) int {
	bars := barsOf(rep, row)
	h := panelHeight(len(bars))
	note := row.Unit
	if lowerIsBetter(row.Unit) {
		note += " · lower is better"
	}
	fmt.Fprintf(b, `<g class="panel">
<rect x="%d" y="%d" width="%d" height="%d" fill="#ffffff" stroke="%s" rx="4"/>
<text x="%d" y="%d" font-size="14" font-weight="bold">%s</text>
<text x="%d" y="%d" fill="%s">%s</text>
`, svgMargin, y, svgWidth-2*svgMargin, h, colorFrame,
		svgMargin+10, y+20, xmlText(figureTitle(row.Figure)),
		svgMargin+10, y+36, colorMuted, xmlText(note))
	scale := 0.0
	for _, st := range row.Cells {
		scale = max(scale, st.Max, st.Median)
	}
	for i, sys := range bars {
		writeBar(b, sys, row.Cells[sys], scale, y+panelHead+i*barPitch)
	}
	b.WriteString("</g>\n")
	return y + h
}

// barX returns the x position of value v on a bar axis whose full length
// barMaxWidth stands for scale; negative values and a zero scale map to the
// axis start.
func barX(v, scale float64) float64 {
	x0 := float64(svgMargin + nameColumn)
	if scale <= 0 || v <= 0 {
		return x0
	}
	return x0 + v/scale*barMaxWidth
}

// writeBar writes the bar of one system with its top at y: name, bar,
// whisker (when there is more than one run) and the median's value.
func writeBar(b *strings.Builder, sys string, st Stats, scale float64, y int) {
	x0 := float64(svgMargin + nameColumn)
	end := barX(st.Median, scale)
	color, class := colorBase, "bar base"
	if isOurs(sys) {
		color, class = colorOurs, "bar ours"
	}
	mid := float64(y) + barHeight/2
	fmt.Fprintf(b, `<text x="%.0f" y="%d" text-anchor="end">%s</text>
<rect class="%s" x="%.1f" y="%d" width="%.1f" height="%d" fill="%s"/>
`, x0-8, y+12, xmlText(sys), class, x0, y, end-x0, barHeight, color)
	textX := end
	if st.N > 1 {
		lo, hi := barX(st.Min, scale), barX(st.Max, scale)
		fmt.Fprintf(b, `<path class="whisker" d="M%.1f %.1fH%.1fM%.1f %.1fV%.1fM%.1f %.1fV%.1f" stroke="%s" fill="none"/>
`, lo, mid, hi, lo, mid-4, mid+4, hi, mid-4, mid+4, colorText)
		textX = max(textX, hi)
	}
	fmt.Fprintf(b, `<text x="%.1f" y="%d">%s</text>
`, textX+6, y+12, xmlText(formatNum(st.Median)))
}
